#!/usr/bin/env bash
# Edge benchmark (issue #6): the cost of request budgets on the authenticated read path
# (GET /api/v1/orgs/{org}), in process and shared through Redis, against the same server with
# limits off; and HTTPS against plain HTTP on the same endpoint. Every figure is a ratio of runs
# made in this script, alternating configurations (the server restarts between them, over the
# same data). Release build, loopback only, every load step bounded in time.
# Writes bench/results/edge.json.
#   bench/edge.sh [seconds-per-step]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT:-18933}
bash scripts/ensure-deps.sh run
for tool in wrk jq redis-server; do
  command -v "$tool" >/dev/null || { echo "==> apt-get install $tool"; apt-get install -y -qq "$tool" >/dev/null; }
done

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-bench.XXXXXX)
chmod 711 "$WORK"
SERVER_PID=""; REDIS_PID=""
stop_palisade() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
cleanup() { stop_palisade; [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "==> starting redis-server on $WORK/redis.sock"
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --save "" --appendonly no --dir "$WORK" >/dev/null &
REDIS_PID=$!
for _ in $(seq 1 100); do [ -S "$WORK/redis.sock" ] && break; sleep 0.05; done

source bench/lib.sh
# Budgets far above what this machine can send, so every request is counted and none refused.
export PALISADE_RATE_LIMITS__ANONYMOUS=100000000 PALISADE_RATE_LIMITS__STANDARD=100000000 PALISADE_RATE_LIMITS__AUTH=100000000
start_palisade "$PORT"
embedded_pg_env
PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)
stop_palisade

# configure NAME: restart the server as NAME (off | local | redis | https).
configure() {
  stop_palisade
  unset PALISADE_REDIS_URL
  case "$1" in
    off) PALISADE_RATE_LIMITS=off start_palisade "$PORT" ;;
    local) PALISADE_RATE_LIMITS=on start_palisade "$PORT" ;;
    redis) PALISADE_RATE_LIMITS=on PALISADE_REDIS_URL="redis+unix://$WORK/redis.sock" start_palisade "$PORT" ;;
    https) PALISADE_RATE_LIMITS=off start_palisade "$PORT" tls ;;
  esac >/dev/null
  local code
  code=$(curl -ks -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG")
  [ "$code" = 200 ] || { echo "$1: GET answered $code" >&2; cat "$WORK/server.log" >&2; exit 1; }
  if [ "$1" = local ] || [ "$1" = redis ]; then
    curl -ks -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" | grep -qi '^ratelimit-policy:' \
      || { echo "$1: no RateLimit-Policy header: limits are not on" >&2; exit 1; }
  fi
  wrk -t 2 -c 16 -d 2s -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" >/dev/null   # warm-up
}
measure() { wrk -t 2 -c 16 -d "${STEP}s" -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" | awk '/^Requests\/sec:/{print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A RESULTS
for i in $(seq 1 "$RUNS"); do
  for mode in off local redis https; do
    configure "$mode"
    rps=$(measure)
    RESULTS[$mode]+="$rps "
    echo "    run $i/$RUNS $mode: $rps req/s"
  done
done
OFF=$(printf '%s\n' ${RESULTS[off]} | median)
LOCAL=$(printf '%s\n' ${RESULTS[local]} | median)
REDIS=$(printf '%s\n' ${RESULTS[redis]} | median)
HTTPS=$(printf '%s\n' ${RESULTS[https]} | median)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$(nproc)" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --arg redis "$(redis-server --version | awk '{print $3}')" \
  --argjson off "$OFF" --argjson local "$LOCAL" --argjson redis_rps "$REDIS" --argjson https "$HTTPS" '
  def fig(name; value; unit; baseline; target):
    {name: name, value: value, unit: unit, baseline: baseline,
     ratio: ((value / baseline) * 1000 | round / 1000), target: target, pass: ((value / baseline) >= target)};
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber), redis: $redis},
   figures: [
     fig("authenticated GET, rate limits in process vs off"; $local; "req/s"; $off; 0.97),
     fig("authenticated GET, rate limits through Redis vs off"; $redis_rps; "req/s"; $off; 0.90),
     fig("authenticated GET over HTTPS vs plain HTTP (limits off)"; $https; "req/s"; $off; 0.85)
   ]}' > bench/results/edge.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/edge.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/edge.json)"
