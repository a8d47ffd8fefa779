#!/usr/bin/env bash
# Sign-in benchmark: password sign-ins/s against the raw argon2id hash rate (same parameters,
# same machine, same run), the p99 of an authenticated read while sign-ins saturate the hash
# pool, and refresh-token rotations/s against pgbench running the same UPDATE + INSERT. Release build, loopback only, bounded steps. Writes bench/results/auth.json.
#   bench/auth.sh [seconds-per-step]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
PORT=${BENCH_PORT:-18932}
bash scripts/ensure-deps.sh run
command -v wrk >/dev/null || { echo "==> apt-get install wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { echo "==> apt-get install jq"; apt-get install -y -qq jq >/dev/null; }

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade -p palisade-auth --example hash_rate 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-bench-auth.XXXXXX)
chmod 711 "$WORK"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

CORES=$(nproc)
echo "==> raw argon2id hashes/s on $CORES threads (${STEP}s)"
RAW=$(./target/release/examples/hash_rate "$CORES" "$STEP")
echo "    $RAW hashes/s"

source bench/lib.sh
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

echo "==> sign-ins/s (wrk, 8 connections, ${STEP}s)"
wrk -t 2 -c 8 -d 3s -s bench/login.lua "$B/api/v1/auth/login" >/dev/null
wrk -t 2 -c 8 -d "${STEP}s" -s bench/login.lua "$B/api/v1/auth/login" >"$WORK/login.txt"
LOGINS=$(awk '/^Requests\/sec:/{print $2}' "$WORK/login.txt")
NON2XX=$(awk '/Non-2xx/{print $NF}' "$WORK/login.txt"); NON2XX=${NON2XX:-0}
echo "    $LOGINS sign-ins/s (non-2xx: $NON2XX)"

echo "==> authenticated reads while sign-ins flood the hash pool (${STEP}s)"
wrk -t 1 -c 8 -d "$((STEP + 2))s" -s bench/login.lua "$B/api/v1/auth/login" >/dev/null &
FLOOD=$!
sleep 1
wrk -t 1 -c 4 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" >"$WORK/read.txt"
wait $FLOOD || true
P99=$(awk '/^ +99%/{print $2}' "$WORK/read.txt")
READS=$(awk '/^Requests\/sec:/{print $2}' "$WORK/read.txt")
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'; }
P99_MS=$(to_ms "$P99")
echo "    p99 $P99 ($READS reads/s)"

echo "==> refresh-token rotations/s (wrk, 8 connections, ${STEP}s) vs pgbench UPDATE + INSERT"
# One sign-in (one refresh family) per connection, 4 connections per wrk thread, plus a spare
# per thread (see refresh.lua).
: >"$WORK/refresh.tokens"
for i in $(seq 0 9); do
  curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"bench$((i % 16))@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .refresh_token >>"$WORK/refresh.tokens"
done
REFRESH_TOKENS="$WORK/refresh.tokens" REFRESH_PER_THREAD=5 \
  wrk -t 2 -c 8 -d "${STEP}s" -s bench/refresh.lua "$B/api/v1/auth/refresh" >"$WORK/refresh.txt"
ROTATIONS=$(awk '/^Requests\/sec:/{print $2}' "$WORK/refresh.txt")
REFRESH_NON2XX=$(awk '/Non-2xx/{print $NF}' "$WORK/refresh.txt"); REFRESH_NON2XX=${REFRESH_NON2XX:-0}
echo "    $ROTATIONS rotations/s (non-2xx: $REFRESH_NON2XX)"
# The same statements the rotation runs at its core — use the presented token (UPDATE … WHERE
# unused) and store its successor (INSERT) — on a table shaped like refresh_tokens, with the
# same foreign key to a real session, 1M live tokens, same cluster, same clients.
SESSION_ID=$(psql_admin -c "SELECT id FROM palisade.sessions ORDER BY created_at DESC LIMIT 1")
psql_admin <<SQL
CREATE TABLE public.bench_refresh (LIKE palisade.refresh_tokens INCLUDING ALL,
    FOREIGN KEY (session_id) REFERENCES palisade.sessions (id) ON DELETE CASCADE);
INSERT INTO public.bench_refresh (token_hash, session_id, issued_at)
    SELECT sha256(i::text::bytea), '$SESSION_ID', now() FROM generate_series(1, 1000000) i;
ANALYZE public.bench_refresh;
SQL
cat >"$WORK/refresh.sql" <<'SQL'
\set n random(1, 1000000)
BEGIN;
UPDATE public.bench_refresh SET used_at = now() WHERE token_hash = sha256(:n::text::bytea) AND used_at IS NULL;
INSERT INTO public.bench_refresh (token_hash, session_id, issued_at) VALUES (sha256(random()::text::bytea), :session::uuid, now());
COMMIT;
SQL
PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" pgbench -n -M prepared -c 8 -j 2 -T "$STEP" -D session="$SESSION_ID" \
  -f "$WORK/refresh.sql" >"$WORK/pgbench-refresh.txt" 2>&1 || { cat "$WORK/pgbench-refresh.txt"; exit 1; }
PG_ROTATIONS=$(awk '/^tps = /{print $3}' "$WORK/pgbench-refresh.txt")
echo "    pgbench: $PG_ROTATIONS tx/s"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$CORES" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --argjson logins "$LOGINS" --argjson raw "$RAW" --argjson p99 "$P99_MS" --argjson reads "$READS" \
  --argjson rotations "$ROTATIONS" --argjson pg_rotations "$PG_ROTATIONS" --argjson refresh_failures "$REFRESH_NON2XX" '
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber)},
   figures: [
     {name: "password sign-ins/s vs raw argon2id hashes/s", value: $logins, unit: "req/s", baseline: $raw,
      ratio: (($logins / $raw) * 1000 | round / 1000), target: 0.8, pass: (($logins / $raw) >= 0.8)},
     {name: "p99 authenticated GET /api/v1/orgs/{org} during a sign-in flood", value: $p99, unit: "ms", baseline: null,
      ratio: null, target: 50, pass: ($p99 < 50)},
     {name: "authenticated reads/s during the flood (reported)", value: $reads, unit: "req/s", baseline: null, ratio: null, target: null, pass: null},
     {name: "refresh-token rotations/s vs pgbench UPDATE + INSERT", value: $rotations, unit: "req/s", baseline: $pg_rotations,
      ratio: (($rotations / $pg_rotations) * 1000 | round / 1000), target: 0.7,
      pass: (($rotations / $pg_rotations) >= 0.7 and $refresh_failures == 0)}
   ]}' > bench/results/auth.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/auth.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/auth.json)"
