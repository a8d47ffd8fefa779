#!/usr/bin/env bash
# Sign-in benchmark: password sign-ins/s against the raw argon2id hash rate (same parameters,
# same machine, same run), and the p99 of an authenticated read while sign-ins saturate the
# hash pool. Release build, loopback only, bounded steps. Writes bench/results/auth.json.
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

echo "==> starting palisade on 127.0.0.1:$PORT (rate limits off: this measures hashing, not the throttle)"
PALISADE_DATA_DIR="$WORK/data" PALISADE_LOG_LEVEL=warn PALISADE_RATE_LIMITS=off \
  "$BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
B="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do curl -sf "$B/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$B/readyz" >/dev/null || { cat "$WORK/server.log"; exit 1; }
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

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$CORES" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --argjson logins "$LOGINS" --argjson raw "$RAW" --argjson p99 "$P99_MS" --argjson reads "$READS" '
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber)},
   figures: [
     {name: "password sign-ins/s vs raw argon2id hashes/s", value: $logins, unit: "req/s", baseline: $raw,
      ratio: (($logins / $raw) * 1000 | round / 1000), target: 0.8, pass: (($logins / $raw) >= 0.8)},
     {name: "p99 authenticated GET /api/v1/orgs/{org} during a sign-in flood", value: $p99, unit: "ms", baseline: null,
      ratio: null, target: 50, pass: ($p99 < 50)},
     {name: "authenticated reads/s during the flood (reported)", value: $reads, unit: "req/s", baseline: null, ratio: null, target: null, pass: null}
   ]}' > bench/results/auth.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/auth.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/auth.json)"
