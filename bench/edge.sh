#!/usr/bin/env bash
# Edge benchmark (issue #6): the cost of request budgets on the authenticated read path
# (GET /api/v1/orgs/{org}), in process and shared through Redis, against a node with limits off;
# and HTTPS against plain HTTP on the same endpoint. Four nodes serve one database side by side;
# each run measures them back to back, and each figure is the median of the runs' ratios.
# Release build, loopback only, every load step bounded in time.
# Writes bench/results/edge.json.
#   bench/edge.sh [seconds-per-step]   (default 6; 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-6}
RUNS=${BENCH_RUNS:-5}
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
# One public URL for every node: access tokens name it as issuer and audience, so the token
# signed in once is valid on all of them, whether they speak HTTP or HTTPS.
export PALISADE_PUBLIC_URL="https://127.0.0.1:$PORT"
# Node "off" owns the embedded cluster; the others serve the same database as external nodes
# (same runtime role and instance key), so no configuration pays for a restart or a cold cache.
PALISADE_RATE_LIMITS=off start_palisade "$PORT"
embedded_pg_env
PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)

declare -A URL=([off]="$B")
EXTRA_PIDS=()
# node NAME PORT [tls] [env…]: another server over the same database.
node() {
  local name=$1 port=$2 flag=--insecure-http scheme=http; shift 2
  if [ "${1:-}" = tls ]; then flag=; scheme=https; shift; fi
  mkdir -p "$WORK/$name"
  env PALISADE_DATA_DIR="$WORK/$name" PALISADE_LOG_LEVEL=warn PALISADE_ACCESS_TOKEN_MINUTES=60 \
    PALISADE_DATABASE_URL="host=$PGHOST port=$PGPORT user=palisade_app password=$APP_PW dbname=$PGDATABASE" \
    PALISADE_INSTANCE_KEY_FILE="$WORK/data/instance.key" PALISADE_KEK_FILE="$WORK/data/kek.key" PALISADE_KEY_STORE_FILE="$WORK/data/keystore.json" "$@" \
    "$BIN" serve --listen "127.0.0.1:$port" $flag >"$WORK/$name.log" 2>&1 &
  EXTRA_PIDS+=($!)
  URL[$name]="$scheme://127.0.0.1:$port"
  for _ in $(seq 1 300); do curl -ksf "${URL[$name]}/readyz" >/dev/null && break; sleep 0.1; done
  local code
  code=$(curl -ks -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG")
  [ "$code" = 200 ] || { echo "$name: GET answered $code" >&2; cat "$WORK/$name.log" >&2; exit 1; }
}
node local $((PORT + 1)) PALISADE_RATE_LIMITS=on
node redis $((PORT + 2)) PALISADE_RATE_LIMITS=on PALISADE_REDIS_URL="redis+unix://$WORK/redis.sock"
node https $((PORT + 3)) tls PALISADE_RATE_LIMITS=off
trap 'for p in "${EXTRA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done; cleanup' EXIT
for name in local redis; do
  curl -ks -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG" | grep -qi '^ratelimit-policy:' \
    || { echo "$name: no RateLimit-Policy header: limits are not on" >&2; exit 1; }
done
if curl -ks -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "${URL[off]}/api/v1/orgs/$ORG" | grep -qi '^ratelimit-policy:'; then
  echo "off: limits are on" >&2; exit 1
fi

measure() { wrk -t 2 -c 16 -d "${STEP}s" -H "Authorization: Bearer $TOKEN" "${URL[$1]}/api/v1/orgs/$ORG" | awk '/^Requests\/sec:/{print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "==> warm-up"
for name in off local redis https; do wrk -t 2 -c 16 -d 2s -H "Authorization: Bearer $TOKEN" "${URL[$name]}/api/v1/orgs/$ORG" >/dev/null; done

# Each run measures every node back to back; a run's ratios compare it with its own "off".
declare -A RPS RATIO
for i in $(seq 1 "$RUNS"); do
  off=$(measure off); RPS[off]+="$off "
  line="    run $i/$RUNS off $off"
  for name in local redis https; do
    rps=$(measure "$name")
    RPS[$name]+="$rps "
    RATIO[$name]+="$(awk -v a="$rps" -v b="$off" 'BEGIN {printf "%.4f", a/b}') "
    line+=", $name $rps"
  done
  echo "$line req/s"
done
OFF=$(printf '%s\n' ${RPS[off]} | median)
LOCAL=$(printf '%s\n' ${RPS[local]} | median); R_LOCAL=$(printf '%s\n' ${RATIO[local]} | median)
REDIS=$(printf '%s\n' ${RPS[redis]} | median); R_REDIS=$(printf '%s\n' ${RATIO[redis]} | median)
HTTPS=$(printf '%s\n' ${RPS[https]} | median); R_HTTPS=$(printf '%s\n' ${RATIO[https]} | median)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$(nproc)" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --arg redis "$(redis-server --version | awk '{print $3}')" \
  --argjson off "$OFF" --argjson local "$LOCAL" --argjson redis_rps "$REDIS" --argjson https "$HTTPS" \
  --argjson r_local "$R_LOCAL" --argjson r_redis "$R_REDIS" --argjson r_https "$R_HTTPS" --argjson runs "$RUNS" '
  def fig(name; value; unit; baseline; ratio; target):
    {name: name, value: value, unit: unit, baseline: baseline, runs: $runs,
     ratio: (ratio * 1000 | round / 1000), target: target, pass: (ratio >= target)};
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber), redis: $redis},
   figures: [
     fig("authenticated GET, rate limits in process vs off (median of paired ratios)"; $local; "req/s"; $off; $r_local; 0.97),
     fig("authenticated GET, rate limits through Redis vs off (median of paired ratios)"; $redis_rps; "req/s"; $off; $r_redis; 0.90),
     fig("authenticated GET over HTTPS vs plain HTTP, limits off (median of paired ratios)"; $https; "req/s"; $off; $r_https; 0.85)
   ]}' > bench/results/edge.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/edge.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/edge.json)"
