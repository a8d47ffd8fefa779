#!/usr/bin/env bash
# Sign-in benchmark: password sign-ins/s against the raw argon2id hash rate (same parameters,
# same machine, same run, windows alternating), the latency of paced authenticated reads while
# sign-ins saturate the hash pool (p99 target; the same reads with no sign-ins reported beside
# it), and refresh-token rotations/s against pgbench running the same UPDATE + INSERT. p50/p99 of every wrk figure are reported. Release build, loopback only, bounded steps.
# Writes bench/results/auth.json.
#   bench/auth.sh [seconds-per-step]   (default 10)
#   env: BENCH_RUNS (3), BENCH_WARMUP (3 s), BENCH_REFRESH_ROWS (1000000 live tokens in the
#        pgbench table)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-3}
REFRESH_ROWS=${BENCH_REFRESH_ROWS:-1000000}
PORT=${BENCH_PORT:-18932}
source bench/lib.sh
bench_prepare -p palisade-server --bin palisade -p palisade-auth --example hash_rate
BIN=$PWD/target/release/palisade
WORK=$(bench_workdir auth)
SERVER_PID=""; FLOOD=""
cleanup() {
  [ -n "$FLOOD" ] && kill "$FLOOD" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  remove_workdir
}
trap cleanup EXIT

CORES=$(nproc)

start_palisade "$PORT"
embedded_pg_env
PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
for i in $(seq 0 15); do
  curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench$i@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench $i\"}" >/dev/null
done
sleep 1
TOKEN_V=$("$BIN" --data-dir "$WORK/data" outbox --show 1 | grep -o 'token=pev_[A-Za-z0-9_-]*' | cut -d= -f2)
# (the first message is bench@example.com's confirmation: signed up first)
curl -sf "$B/api/v1/auth/verify-email" -H 'content-type: application/json' -d "{\"token\":\"$TOKEN_V\"}" >/dev/null
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)

NOTE=$(runs_note)
# The raw rate is measured between the sign-in runs, with the server idle (its sequencer ticks
# once a second), and each run's ratio compares the two windows next to each other: the
# machine's speed drifts by 10-20 % over a minute, and a raw rate taken once at the start
# measured the drift as much as the server.
echo "==> sign-ins/s (wrk, 8 connections) and raw argon2id hashes/s on $CORES threads, alternating ($RUNS run(s) of ${STEP}s each)"
wrk -t 2 -c 8 -d "${WARMUP}s" -s bench/login.lua "$B/api/v1/auth/login" >/dev/null
declare -a LOGINS_ L50 L99 RAWS SIGNIN_RATIOS
LOGIN_FAILS=0
for run in $(seq 1 "$RUNS"); do
  RAWS+=("$(./target/release/examples/hash_rate "$CORES" "$STEP")")
  wrk -t 2 -c 8 -d "${STEP}s" --latency -s bench/login.lua "$B/api/v1/auth/login" >"$WORK/login.txt"
  read -r rps p50 p99 < <(wrk_stats "$WORK/login.txt"); LOGINS_+=("$rps"); L50+=("$p50"); L99+=("$p99")
  SIGNIN_RATIOS+=("$(awk -v a="$rps" -v b="${RAWS[-1]}" 'BEGIN {printf "%.4f", a/b}')")
  n=$(awk '/Non-2xx/{print $NF}' "$WORK/login.txt"); LOGIN_FAILS=$((LOGIN_FAILS + ${n:-0}))
  echo "    raw ${RAWS[-1]} hashes/s; $rps sign-ins/s (p50 $p50 ms, p99 $p99 ms; non-2xx: ${n:-0}): ${SIGNIN_RATIOS[-1]}"
done
LOGINS=$(printf '%s\n' "${LOGINS_[@]}" | median); RAW=$(printf '%s\n' "${RAWS[@]}" | median)
if [ "$RUNS" = 1 ]; then PAIRS="1 pair of ${STEP} s windows (no median)"; else PAIRS="median of $RUNS pairs' ratios, ${STEP} s windows"; fi
figure "password sign-ins/s vs raw argon2id hashes/s" "$LOGINS" req/s "$RAW" "$(printf '%s\n' "${SIGNIN_RATIOS[@]}" | median)" 0.8 \
  "$PAIRS; 16 accounts, 8 connections; raw rate on $CORES threads with the server idle, measured just before each sign-in window"
[ "$LOGIN_FAILS" = 0 ] || figure_fails "$LOGIN_FAILS sign-ins answered non-2xx"
figure "password sign-in latency p50" "$(printf '%s\n' "${L50[@]}" | median)" ms "" "" "" "$NOTE"
figure "password sign-in latency p99" "$(printf '%s\n' "${L99[@]}" | median)" ms "" "" "" "$NOTE"

echo "==> paced authenticated reads (4 connections, 5 ms between a connection's reads) alone, then while sign-ins flood the hash pool ($RUNS run(s) of ${STEP}s each)"
declare -a Q50 Q99 R50 R99 READS_ FLOODS
READ_FAILS=0
paced() { wrk -t 1 -c 4 -d "${STEP}s" --latency -s bench/paced.lua -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" >"$WORK/read.txt"; }
for run in $(seq 1 "$RUNS"); do
  paced
  read -r qrps q50 q99 < <(wrk_stats "$WORK/read.txt"); Q50+=("$q50"); Q99+=("$q99")
  n=$(awk '/Non-2xx/{print $NF}' "$WORK/read.txt"); READ_FAILS=$((READ_FAILS + ${n:-0}))
  wrk -t 1 -c 8 -d "$((STEP + 2))s" -s bench/login.lua "$B/api/v1/auth/login" >"$WORK/flood.txt" &
  FLOOD=$!
  sleep 1
  paced
  wait "$FLOOD" || true; FLOOD=""
  read -r rps p50 p99 < <(wrk_stats "$WORK/read.txt"); READS_+=("$rps"); R50+=("$p50"); R99+=("$p99")
  FLOODS+=("$(awk '/^Requests\/sec/{print $2}' "$WORK/flood.txt")")
  n=$(awk '/Non-2xx/{print $NF}' "$WORK/read.txt"); READ_FAILS=$((READ_FAILS + ${n:-0}))
  echo "    alone: p50 $q50 ms, p99 $q99 ms ($qrps reads/s); during the flood: p50 $p50 ms, p99 $p99 ms ($rps reads/s, ${FLOODS[-1]} sign-ins/s)"
done
figure "p99 authenticated GET /api/v1/orgs/{org} during a sign-in flood" "$(printf '%s\n' "${R99[@]}" | median)" ms "" "" 50 "$NOTE; 4 paced readers (bench/paced.lua), 8 connections signing in"
[ "$READ_FAILS" = 0 ] || figure_fails "$READ_FAILS reads answered non-2xx"
figure "p50 authenticated GET /api/v1/orgs/{org} during a sign-in flood" "$(printf '%s\n' "${R50[@]}" | median)" ms "" "" "" "$NOTE"
figure "p99 of the same paced reads with no sign-ins (same run)" "$(printf '%s\n' "${Q99[@]}" | median)" ms "" "" "" "$NOTE"
figure "paced reads/s during the flood" "$(printf '%s\n' "${READS_[@]}" | median)" req/s "" "" "" "$NOTE"
figure "sign-ins/s during the paced reads" "$(printf '%s\n' "${FLOODS[@]}" | median)" req/s "" "" "" "$NOTE"

echo "==> refresh-token rotations/s (wrk, 8 connections) vs pgbench UPDATE + INSERT ($RUNS run(s) of four legs: R P P R)"
# The same statements the rotation runs at its core — use the presented token (UPDATE … WHERE
# unused) and store its successor (INSERT) — on a table shaped like refresh_tokens, with the
# same foreign key to a real session, $REFRESH_ROWS live tokens, same cluster, same clients.
SESSION_ID=$(psql_admin -c "SELECT id FROM palisade.sessions ORDER BY created_at DESC LIMIT 1")
psql_admin <<SQL
CREATE TABLE public.bench_refresh (LIKE palisade.refresh_tokens INCLUDING ALL,
    FOREIGN KEY (session_id) REFERENCES palisade.sessions (id) ON DELETE CASCADE);
INSERT INTO public.bench_refresh (token_hash, session_id, issued_at)
    SELECT sha256(i::text::bytea), '$SESSION_ID', now() FROM generate_series(1, $REFRESH_ROWS) i;
ANALYZE public.bench_refresh;
SQL
cat >"$WORK/refresh.sql" <<SQL
\\set n random(1, $REFRESH_ROWS)
BEGIN;
UPDATE public.bench_refresh SET used_at = now() WHERE token_hash = sha256(:n::text::bytea) AND used_at IS NULL;
INSERT INTO public.bench_refresh (token_hash, session_id, issued_at) VALUES (sha256(random()::text::bytea), :session::uuid, now());
COMMIT;
SQL
# A token works once and wrk keeps the successors to itself: every wrk run needs fresh token
# families — one sign-in per connection, 4 connections per wrk thread, plus a spare per thread
# (see refresh.lua).
rotate() { # seconds output-file [--latency]
  : >"$WORK/refresh.tokens"
  for i in $(seq 0 9); do
    curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' \
      -d "{\"email\":\"bench$((i % 16))@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .refresh_token >>"$WORK/refresh.tokens"
  done
  REFRESH_TOKENS="$WORK/refresh.tokens" REFRESH_PER_THREAD=5 \
    wrk -t 2 -c 8 -d "${1}s" ${3:-} -s bench/refresh.lua "$B/api/v1/auth/refresh" >"$2"
}
rotate "$WARMUP" /dev/null
PGREFRESH=(pgbench -n -M prepared -c 8 -j 2 -D session="$SESSION_ID" -f "$WORK/refresh.sql")
PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" "${PGREFRESH[@]}" -T "$WARMUP" >/dev/null 2>&1 || true # warm-up (a failure shows in the measured runs)
# Both sides end in a WAL flush per commit, and this machine's speed drifts over seconds: each
# run is four legs, rotations, pgbench, pgbench, rotations (the drift cancels to first order);
# its ratio is the rotations' mean over pgbench's, the figure the median of the runs' ratios.
LEG=$((STEP >= 5 ? 3 : 1))
declare -a ROTS RO50 RO99 PGROTS RATIOS
REFRESH_FAILS=0
rotate_leg() {
  rotate "$LEG" "$WORK/refresh.txt" --latency
  read -r rps p50 p99 < <(wrk_stats "$WORK/refresh.txt"); ROTS+=("$rps"); RO50+=("$p50"); RO99+=("$p99")
  n=$(awk '/Non-2xx/{print $NF}' "$WORK/refresh.txt"); REFRESH_FAILS=$((REFRESH_FAILS + ${n:-0}))
  echo "$rps"
}
pgbench_leg() {
  PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" "${PGREFRESH[@]}" -T "$LEG" >"$WORK/pgbench-refresh.txt" 2>&1 \
    || { cat "$WORK/pgbench-refresh.txt" >&2; return 1; }
  awk '/^tps = /{print $3}' "$WORK/pgbench-refresh.txt"
}
for run in $(seq 1 "$RUNS"); do
  # (assignments, not command substitutions in a pipeline: ROTS and the failure count must stay)
  rotate_leg >"$WORK/leg"; r1=$(cat "$WORK/leg"); g1=$(pgbench_leg); g2=$(pgbench_leg)
  rotate_leg >"$WORK/leg"; r2=$(cat "$WORK/leg")
  PGROTS+=("$g1" "$g2")
  RATIOS+=("$(awk -v a="$r1" -v b="$r2" -v c="$g1" -v d="$g2" 'BEGIN {printf "%.3f", (a + b) / (c + d)}')")
  echo "    rotations $r1, $r2/s; pgbench $g1, $g2 tx/s; ratio ${RATIOS[-1]} (non-2xx so far: $REFRESH_FAILS)"
done
NOTE="median of $RUNS runs, each four ${LEG} s legs: rotations, pgbench, pgbench, rotations"
figure "refresh-token rotations/s vs pgbench UPDATE + INSERT" "$(printf '%s\n' "${ROTS[@]}" | median)" req/s \
  "$(printf '%s\n' "${PGROTS[@]}" | median)" "$(printf '%s\n' "${RATIOS[@]}" | median)" 0.7 "$NOTE; pgbench table of $REFRESH_ROWS live tokens"
[ "$REFRESH_FAILS" = 0 ] || figure_fails "$REFRESH_FAILS rotations answered non-2xx"
figure "refresh-token rotation latency p50" "$(printf '%s\n' "${RO50[@]}" | median)" ms "" "" "" "$NOTE"
figure "refresh-token rotation latency p99" "$(printf '%s\n' "${RO99[@]}" | median)" ms "" "" "" "$NOTE"
write_results auth
