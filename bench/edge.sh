#!/usr/bin/env bash
# Edge benchmark (issue #6): the cost of request budgets on the authenticated read path
# (GET /api/v1/orgs/{org}), in process and shared through Redis, against a node with limits off;
# and HTTPS against plain HTTP on the same endpoint. Four nodes serve one database side by side;
# each is sampled BENCH_RUNS x 4 times for 2 s in turn (order reversed every cycle), and each ratio
# is the median of the cycles' ratios.
# p50/p99 latency of each node is reported. Release build, loopback only, every load step
# bounded in time. Writes bench/results/edge.json.
#   bench/edge.sh [seconds-per-step]   (default 6)
#   env: BENCH_RUNS (5; cycles = 4 x runs), BENCH_WARMUP (2 s per node), BENCH_EDGE_SAMPLE (2 s)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-6} # sets the sample length: 2 s, or 1 s for steps under 4 s
RUNS=${BENCH_RUNS:-5}
WARMUP=${BENCH_WARMUP:-2}
PORT=${BENCH_PORT:-18933}
source bench/lib.sh
bench_prepare -p palisade-server --bin palisade
command -v redis-server >/dev/null || { echo "==> apt-get install redis-server"; apt-get install -y -qq redis-server >/dev/null; }
BIN=$PWD/target/release/palisade
WORK=$(bench_workdir edge)
SERVER_PID=""; REDIS_PID=""
stop_palisade() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
cleanup() { stop_palisade; [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; remove_workdir; }
trap cleanup EXIT

echo "==> starting redis-server on $WORK/redis.sock"
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --save "" --appendonly no --dir "$WORK" >/dev/null &
REDIS_PID=$!
for _ in $(seq 1 100); do [ -S "$WORK/redis.sock" ] && break; sleep 0.05; done

# Budgets far above what this machine can send, so every request is counted and none refused.
export PALISADE_RATE_LIMITS__ANONYMOUS=100000000 PALISADE_RATE_LIMITS__STANDARD=100000000 PALISADE_RATE_LIMITS__AUTH=100000000
# One public URL for every node: access tokens name it as issuer and audience, so the token
# signed in once is valid on all of them, whether they speak HTTP or HTTPS.
export PALISADE_PUBLIC_URL="https://127.0.0.1:$PORT"
# Node "owner" owns the embedded cluster; the others serve the same database as external nodes
# (same runtime role and instance key), so no configuration pays for a restart or a cold cache.
PALISADE_RATE_LIMITS=off start_palisade "$PORT"
embedded_pg_env
PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)

declare -A URL=([owner]="$B")
EXTRA_PIDS=()
# node NAME PORT [tls] [env…]: another server over the same database.
node() {
  local name=$1 port=$2 flag=--insecure-http scheme=http; shift 2
  if [ "${1:-}" = tls ]; then flag=; scheme=https; shift; fi
  mkdir -p "$WORK/$name"
  env PALISADE_DATA_DIR="$WORK/$name" PALISADE_LOG_LEVEL=warn PALISADE_ACCESS_TOKEN_MINUTES=60 \
    PALISADE_DATABASE_URL="host=$PGHOST port=$PGPORT user=palisade_app password=$APP_PW dbname=$PGDATABASE" \
    PALISADE_DATABASE_SIGNIN_URL="host=$PGHOST port=$PGPORT user=palisade_app_signin password=$SIGNIN_PW dbname=$PGDATABASE" \
    PALISADE_INSTANCE_KEY_FILE="$WORK/data/instance.key" PALISADE_KEK_FILE="$WORK/data/kek.key" PALISADE_KEY_STORE_FILE="$WORK/data/keystore.json" "$@" \
    "$BIN" serve --listen "127.0.0.1:$port" $flag >"$WORK/$name.log" 2>&1 &
  EXTRA_PIDS+=($!)
  URL[$name]="$scheme://127.0.0.1:$port"
  for _ in $(seq 1 300); do curl -ksf "${URL[$name]}/readyz" >/dev/null && break; sleep 0.1; done
  local code
  code=$(curl -ks -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG")
  [ "$code" = 200 ] || { echo "$name: GET answered $code" >&2; cat "$WORK/$name.log" >&2; exit 1; }
}
# Set before the first node starts, so a node that fails to come up does not leave the others running.
trap 'for p in "${EXTRA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done; cleanup' EXIT
# The baseline is a node like the others, not the one that owns the embedded cluster (which also
# runs its supervision), so that limits are the only difference between the nodes compared.
node off $((PORT + 4)) PALISADE_RATE_LIMITS=off
node local $((PORT + 1)) PALISADE_RATE_LIMITS=on
node redis $((PORT + 2)) PALISADE_RATE_LIMITS=on PALISADE_REDIS_URL="redis+unix://$WORK/redis.sock"
node https $((PORT + 3)) tls PALISADE_RATE_LIMITS=off
for name in local redis; do
  curl -ks -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG" | grep -qi '^ratelimit-policy:' \
    || { echo "$name: no RateLimit-Policy header: limits are not on" >&2; exit 1; }
done
if curl -ks -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "${URL[off]}/api/v1/orgs/$ORG" | grep -qi '^ratelimit-policy:'; then
  echo "off: limits are on" >&2; exit 1
fi

SAMPLE=${BENCH_EDGE_SAMPLE:-$(( STEP < 4 ? 1 : 2 ))} # quick mode (2 s steps) samples 1 s
CYCLES=$(( RUNS * 4 ))
# measure NAME: "req/s p50_ms p99_ms" of one wrk sample against the node.
measure() {
  wrk -t 2 -c 16 -d "${SAMPLE}s" --latency -H "Authorization: Bearer $TOKEN" "${URL[$1]}/api/v1/orgs/$ORG" >"$WORK/wrk-$1.txt"
  wrk_ok "$WORK/wrk-$1.txt" && wrk_stats "$WORK/wrk-$1.txt"
}
echo "==> warm-up (${WARMUP}s per node)"
for name in off local redis https; do wrk -t 2 -c 16 -d "${WARMUP}s" -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG" >/dev/null; done

# On two shared cores the throughput of one node swings by 10-25 % from one few-second window to
# the next (dips that last seconds: the scheduler's split between wrk, the server and PostgreSQL).
# So every node is sampled many times in short windows, one after the other (a cycle), the order
# reversed every cycle (a drift then weighs on every node alike); a cycle's ratio compares
# samples seconds apart, and each figure is the median over the cycles: a dip moves one ratio,
# not the figure.
echo "==> $CYCLES cycles of ${SAMPLE}s per node, order reversed every cycle: off, in-process limits, Redis limits, HTTPS"
# (an assignment first, so that a failed sample stops the script under set -e)
declare -A RPS P50 P99 RATIO
NODES=(off local redis https)
for c in $(seq 1 "$CYCLES"); do
  order=("${NODES[@]}")
  [ $((c % 2)) = 0 ] && order=(https redis local off)
  line="    cycle $c/$CYCLES"
  declare -A NOW=()
  for name in "${order[@]}"; do
    stats=$(measure "$name"); read -r rps p50 p99 <<<"$stats"
    RPS[$name]+="$rps "; P50[$name]+="$p50 "; P99[$name]+="$p99 "; NOW[$name]=$rps
    line+=" $name $rps"
  done
  for name in local redis https; do RATIO[$name]+="$(awk -v a="${NOW[$name]}" -v b="${NOW[off]}" 'BEGIN {printf "%.4f", a/b}') "; done
  echo "$line req/s"
done
med() { printf '%s\n' $1 | median; }
NOTE="median of $CYCLES cycles' ratios; a cycle samples each node for ${SAMPLE} s in turn, order reversed every cycle"
OFF=$(med "${RPS[off]}")
figure "authenticated GET, rate limits in process vs off" "$(med "${RPS[local]}")" req/s "$OFF" "$(med "${RATIO[local]}")" 0.97 "$NOTE"
figure "authenticated GET, rate limits through Redis vs off" "$(med "${RPS[redis]}")" req/s "$OFF" "$(med "${RATIO[redis]}")" 0.90 "$NOTE; Redis on a Unix socket"
figure "authenticated GET over HTTPS vs plain HTTP, limits off" "$(med "${RPS[https]}")" req/s "$OFF" "$(med "${RATIO[https]}")" 0.85 "$NOTE; TLS 1.3, keep-alive"
LNOTE="median of $CYCLES samples of ${SAMPLE} s"
for name in off local redis https; do
  case $name in off) what="limits off";; local) what="limits in process";; redis) what="limits through Redis";; https) what="HTTPS";; esac
  figure "authenticated GET latency p50, $what" "$(med "${P50[$name]}")" ms "" "" "" "$LNOTE"
  figure "authenticated GET latency p99, $what" "$(med "${P99[$name]}")" ms "" "" "" "$LNOTE"
done
write_results edge "$(jq -cn --arg redis "$(redis-server --version | awk '{print $3}')" '{redis: $redis}')"
