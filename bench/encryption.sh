#!/usr/bin/env bash
# Encryption-at-rest benchmark (the Encryption issue), each figure against a baseline measured in
# the same run on the same machine:
#  1. single record GET with sensitive fields shown in clear (decrypted with the cached data key,
#     the read audited) vs the same record shape with no sensitive field (wrk); and vs a masked
#     read of the sensitive record (audited the same way, nothing decrypted): the cost of the
#     cryptography alone;
#  2. data-key rotation (`palisade keys rotate --org`, batches of 500: read, decrypt, encrypt,
#     compare-and-set) in values per second vs a plain batched UPDATE writing new values into the
#     same rows' sealed column (500 per statement, same rows, same cluster, run from psql).
# Release build, loopback only, bounded steps. Writes bench/results/encryption.json.
#   bench/encryption.sh [seconds-per-step] [records]   (defaults 10, 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
RECORDS=${2:-20000}
PORT=${BENCH_PORT:-18935}
bash scripts/ensure-deps.sh run
command -v wrk >/dev/null || { echo "==> apt-get install wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { echo "==> apt-get install jq"; apt-get install -y -qq jq >/dev/null; }

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-bench-enc.XXXXXX)
chmod 711 "$WORK"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/lib.sh
start_palisade "$PORT"
embedded_pg_env

PASSWORD="violet-kettle-orbit-93"
signup() {
  curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
  psql_admin -c "UPDATE palisade.users SET email_verified_at = now() WHERE email = '$1'"
  curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}" | jq -r .access_token
}
TOKEN=$(signup owner@example.com)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench"}' | jq -r .id)
FIELDS='"name":{"type":"string"},"team":{"type":"string"},"notes":{"type":"string"}'
for c in people plain; do
  if [ $c = people ]; then extra=',"ssn":{"type":"string","x-palisade-sensitive":true},"salary":{"type":"number","x-palisade-sensitive":true}'
  else extra=',"ssn":{"type":"string"},"salary":{"type":"number"}'; fi
  curl -sf "$B/api/v1/orgs/$ORG/collections" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"$c\",\"schema\":{\"type\":\"object\",\"properties\":{$FIELDS$extra}}}" >/dev/null
done
DATA='{"data":{"name":"Ana Lopez","team":"roofs","notes":"ladder certified","ssn":"078-05-1120","salary":5100}}'
SENS=$(curl -sf "$B/api/v1/orgs/$ORG/collections/people/records" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$DATA" | jq -r .id)
PLAIN=$(curl -sf "$B/api/v1/orgs/$ORG/collections/plain/records" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$DATA" | jq -r .id)
MEMBER=$(signup member@example.com)
psql_admin -c "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at) SELECT o.tenant_id, u.id, 'member', now() FROM palisade.orgs o, palisade.users u WHERE u.email = 'member@example.com'"
SENS_URL="$B/api/v1/orgs/$ORG/collections/people/records/$SENS"
PLAIN_URL="$B/api/v1/orgs/$ORG/collections/plain/records/$PLAIN"
[ "$(curl -sf -H "Authorization: Bearer $TOKEN" "$SENS_URL" | jq -r .data.ssn)" = "078-05-1120" ]
[ "$(curl -sf -H "Authorization: Bearer $MEMBER" "$SENS_URL" | jq -r '.masked | join(",")')" = "salary,ssn" ]
[ "$(psql_admin -c "SELECT count(*) FROM palisade.records WHERE sealed IS NOT NULL AND data ? 'ssn'")" = 0 ]

get_rps() { # token url seconds
  wrk -t 2 -c 16 -d "${3}s" -H "Authorization: Bearer $1" "$2" >"$WORK/wrk.txt"
  if grep -q Non-2xx "$WORK/wrk.txt"; then cat "$WORK/wrk.txt"; echo "reads failed" >&2; exit 1; fi
  awk '/^Requests\/sec:/{print $2}' "$WORK/wrk.txt"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

echo "==> 1. record GET: sensitive in clear vs no sensitive field vs masked (5 alternating runs of ${STEP}s)"
get_rps "$TOKEN" "$SENS_URL" 3 >/dev/null; get_rps "$TOKEN" "$PLAIN_URL" 3 >/dev/null
declare -a RP RM SS PP MM
for run in 1 2 3 4 5; do
  s=$(get_rps "$TOKEN" "$SENS_URL" "$STEP"); p=$(get_rps "$TOKEN" "$PLAIN_URL" "$STEP"); m=$(get_rps "$MEMBER" "$SENS_URL" "$STEP")
  RP+=("$(ratio "$s" "$p")"); RM+=("$(ratio "$s" "$m")"); SS+=("$s"); PP+=("$p"); MM+=("$m")
  echo "    sensitive in clear $s/s, no sensitive field $p/s, masked $m/s"
done
READ_RATIO=$(printf '%s\n' "${RP[@]}" | median); CRYPTO_RATIO=$(printf '%s\n' "${RM[@]}" | median)
SENS_RPS=$(printf '%s\n' "${SS[@]}" | median); PLAIN_RPS=$(printf '%s\n' "${PP[@]}" | median); MASKED_RPS=$(printf '%s\n' "${MM[@]}" | median)
EVENTS=$(psql_admin -c "SELECT count(*) FROM palisade.audit_events WHERE action IN ('record.sensitive_read', 'record.sensitive_denied')")
echo "    sensitive/plain $READ_RATIO, sensitive/masked $CRYPTO_RATIO ($EVENTS sensitive-access events written)"

echo "==> 2. seeding $RECORDS records with sensitive fields (through the API)"
cat >"$WORK/create.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"data":{"name":"p%d","team":"t%d","ssn":"%09d","salary":%d}}', n, n % 7, n, n % 9000)
  return wrk.format("POST", os.getenv("BENCH_PATH"), {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}, body)
end
LUA
until [ "$(psql_admin -c "SELECT count(*) >= $RECORDS FROM palisade.records WHERE collection = 'people'")" = t ]; do
  BENCH_PATH="/api/v1/orgs/$ORG/collections/people/records" BENCH_TOKEN="$TOKEN" wrk -t 2 -c 16 -d 5s -s "$WORK/create.lua" "$B" >/dev/null
done
N=$(psql_admin -c "SELECT count(*) FROM palisade.records WHERE sealed IS NOT NULL")
psql_admin -c "VACUUM ANALYZE palisade.records"
echo "    $N records hold sealed fields"

# The baseline writes a new value into the same column of the same rows, as the rotation does (a
# changed column under an expression index: no HOT update, new index entries, the sealed-key
# guard's lock; `SET sealed = sealed` would be a HOT no-op no real update is). A nonce byte goes
# x -> 255 - x (the key id must stay one the organization has); a second, untimed pass restores it.
flip_pass() {
  psql_admin -c "DO \$\$ DECLARE last uuid := '00000000-0000-0000-0000-000000000000'; n int; BEGIN
    LOOP
      WITH b AS (SELECT tenant_id, id FROM palisade.records WHERE sealed IS NOT NULL AND id > last ORDER BY id LIMIT 500),
           u AS (UPDATE palisade.records r SET sealed = set_byte(r.sealed, 20, 255 - get_byte(r.sealed, 20))
                 FROM b WHERE r.tenant_id = b.tenant_id AND r.id = b.id RETURNING r.id)
      SELECT count(*), max(id::text)::uuid INTO n, last FROM u;
      COMMIT;
      EXIT WHEN n < 500;
    END LOOP; END \$\$"
}
echo "==> plain UPDATE of the same rows' sealed column to new values, 500 per statement (baseline)"
START=$(date +%s.%N)
flip_pass
UPDATE_S=$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}')
flip_pass
psql_admin -c "VACUUM ANALYZE palisade.records"
UPDATE_RATE=$(awk -v n="$N" -v s="$UPDATE_S" 'BEGIN {printf "%.0f", n/s}')
echo "    $N rows in ${UPDATE_S}s: $UPDATE_RATE rows/s"

echo "==> palisade keys rotate --org (the server keeps running)"
START=$(date +%s.%N)
PALISADE_DATA_DIR="$WORK/data" PALISADE_LOG_LEVEL=warn \
  PALISADE_DATABASE_URL="host=$PGHOST port=5432 user=palisade_app password=$APP_PW dbname=palisade" \
  "$BIN" keys rotate --org "$ORG" | tee "$WORK/rotate.txt"
ROTATE_S=$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}')
MOVED=$(grep -o '[0-9]* values re-encrypted' "$WORK/rotate.txt" | awk '{print $1}')
ROTATE_RATE=$(awk -v n="$MOVED" -v s="$ROTATE_S" 'BEGIN {printf "%.0f", n/s}')
ROTATE_RATIO=$(ratio "$ROTATE_RATE" "$UPDATE_RATE")
[ "$(psql_admin -c "SELECT count(DISTINCT palisade.envelope_key(sealed)) FROM palisade.records WHERE sealed IS NOT NULL")" = 1 ]
[ "$(curl -sf -H "Authorization: Bearer $TOKEN" "$SENS_URL" | jq -r .data.ssn)" = "078-05-1120" ]
echo "    $MOVED values in ${ROTATE_S}s: $ROTATE_RATE values/s = $ROTATE_RATIO x the plain UPDATE"

mkdir -p bench/results
jq -n --arg cpus "$(nproc)" --arg step "$STEP" \
  --arg sens "$SENS_RPS" --arg plain "$PLAIN_RPS" --arg masked "$MASKED_RPS" --arg rr "$READ_RATIO" --arg cr "$CRYPTO_RATIO" \
  --arg n "$N" --arg urate "$UPDATE_RATE" --arg rrate "$ROTATE_RATE" --arg rot "$ROTATE_RATIO" '{
  machine: {cpus: ($cpus|tonumber)}, seconds_per_step: ($step|tonumber),
  read: {sensitive_in_clear_rps: ($sens|tonumber), no_sensitive_field_rps: ($plain|tonumber), masked_rps: ($masked|tonumber),
         ratio_vs_no_sensitive_field: ($rr|tonumber), ratio_vs_masked: ($cr|tonumber), target: 0.9},
  rotation: {values: ($n|tonumber), values_per_second: ($rrate|tonumber), plain_update_rows_per_second: ($urate|tonumber),
             ratio: ($rot|tonumber), target: 0.5}}' >bench/results/encryption.json
cat bench/results/encryption.json
