#!/usr/bin/env bash
# Encryption-at-rest benchmark (the Encryption issue), each figure against a baseline measured in
# the same run on the same machine:
#  1. single record GET with sensitive fields shown in clear (decrypted with the cached data key,
#     the read audited) vs the same record shape with no sensitive field (wrk); and vs a masked
#     read of the sensitive record (audited the same way, nothing decrypted): the cost of the
#     cryptography alone; p50/p99 of each read reported;
#  2. data-key rotation (`palisade keys rotate --org`, batches of 500: read, decrypt, encrypt,
#     compare-and-set) in values per second vs a plain batched UPDATE writing new values into the
#     same rows' sealed column (500 per statement, same rows, same cluster, run from psql). One
#     run: a rotation moves every value once.
# Release build, loopback only, bounded steps. Writes bench/results/encryption.json.
#   bench/encryption.sh [seconds-per-step] [records]   (defaults 10, 20000)
#   env: BENCH_RUNS (5), BENCH_WARMUP (3 s)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
RECORDS=${2:-20000}
RUNS=${BENCH_RUNS:-5}
WARMUP=${BENCH_WARMUP:-3}
PORT=${BENCH_PORT:-18935}
source bench/lib.sh
bench_prepare -p palisade-server --bin palisade
BIN=$PWD/target/release/palisade
WORK=$(bench_workdir encryption)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; remove_workdir; }
trap cleanup EXIT

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

# get_stats TOKEN URL SECONDS: "req/s p50_ms p99_ms" of one wrk run (every answer must be 2xx).
get_stats() {
  wrk -t 2 -c 16 -d "${3}s" --latency -H "Authorization: Bearer $1" "$2" >"$WORK/wrk.txt"
  wrk_ok "$WORK/wrk.txt" && wrk_stats "$WORK/wrk.txt"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

# This machine's speed drifts by 10-20 % over seconds (a shared virtual machine), so each run is
# six legs in the order sensitive, plain, masked, masked, plain, sensitive (a linear drift cancels
# out of every ratio); a run's ratio compares the means of its legs, the figure is the median of
# the runs' ratios.
LEG=$((STEP >= 5 ? 2 : 1))
echo "==> 1. record GET: sensitive in clear vs no sensitive field vs masked ($RUNS run(s) of six ${LEG}s legs: S P M M P S)"
get_stats "$TOKEN" "$SENS_URL" "$WARMUP" >/dev/null; get_stats "$TOKEN" "$PLAIN_URL" "$WARMUP" >/dev/null
get_stats "$MEMBER" "$SENS_URL" "$WARMUP" >/dev/null
declare -a RP RM SS PP MM S50 S99 P50 P99 M50 M99
get_leg() { # S|P|M: one leg; appends its latencies, prints req/s
  local stats r l50 l99
  case $1 in
    S) stats=$(get_stats "$TOKEN" "$SENS_URL" "$LEG") ;;
    P) stats=$(get_stats "$TOKEN" "$PLAIN_URL" "$LEG") ;;
    M) stats=$(get_stats "$MEMBER" "$SENS_URL" "$LEG") ;;
  esac
  read -r r l50 l99 <<<"$stats"
  case $1 in
    S) S50+=("$l50"); S99+=("$l99") ;;
    P) P50+=("$l50"); P99+=("$l99") ;;
    M) M50+=("$l50"); M99+=("$l99") ;;
  esac
  echo "$r" >"$WORK/leg"
}
mean2() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (a + b) / 2}'; }
for run in $(seq 1 "$RUNS"); do
  # (the leg's output through a file: a command substitution would lose the latencies it appends)
  get_leg S; s1=$(cat "$WORK/leg"); get_leg P; p1=$(cat "$WORK/leg"); get_leg M; m1=$(cat "$WORK/leg")
  get_leg M; m2=$(cat "$WORK/leg"); get_leg P; p2=$(cat "$WORK/leg"); get_leg S; s2=$(cat "$WORK/leg")
  s=$(mean2 "$s1" "$s2"); p=$(mean2 "$p1" "$p2"); m=$(mean2 "$m1" "$m2")
  RP+=("$(ratio "$s" "$p")"); RM+=("$(ratio "$s" "$m")"); SS+=("$s"); PP+=("$p"); MM+=("$m")
  echo "    sensitive in clear $s/s, no sensitive field $p/s, masked $m/s (ratio ${RP[-1]})"
done
med() { printf '%s\n' "$@" | median; }
READ_RATIO=$(med "${RP[@]}"); CRYPTO_RATIO=$(med "${RM[@]}")
SENS_RPS=$(med "${SS[@]}"); PLAIN_RPS=$(med "${PP[@]}"); MASKED_RPS=$(med "${MM[@]}")
EVENTS=$(psql_admin -c "SELECT count(*) FROM palisade.audit_events WHERE action IN ('record.sensitive_read', 'record.sensitive_denied')")
echo "    sensitive/plain $READ_RATIO, sensitive/masked $CRYPTO_RATIO ($EVENTS sensitive-access events written)"

# The database's share: the server's GET transaction (App::get_record, as records.sh builds it)
# for each record in pgbench, as the runtime role with the owner's session. Both are read-only.
# A read of the sensitive record also writes its audit event, in a transaction shared with the
# other reads of the organization waiting at that moment (access_events): modelled here as one
# transaction of 16 events (records::RECORD_SENSITIVE_ACCESSES; one per client, the group size
# when all 16 read at once) for every 16 reads. The ratio of reads/s bounds what the server
# can reach.
SESSION_HEX=$(psql_admin -c "SELECT encode($BEARER_PROOF, 'hex') FROM palisade.sessions s JOIN palisade.users u ON u.id = s.user_id WHERE u.email = 'owner@example.com' ORDER BY s.created_at DESC LIMIT 1")
ORG_UUID=$(psql_admin -c "SELECT tenant_id FROM palisade.orgs WHERE name = 'Bench'")
SENS_UUID=$(psql_admin -c "SELECT id FROM palisade.records WHERE collection = 'people' LIMIT 1")
PLAIN_UUID=$(psql_admin -c "SELECT id FROM palisade.records WHERE collection = 'plain' LIMIT 1")
OWNER_UUID=$(psql_admin -c "SELECT id FROM palisade.users WHERE email = 'owner@example.com'")
V7="(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 16, '0') || substr(md5(random()::text), 1, 16))::uuid"
cat >"$WORK/get.sql" <<SQL
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
SELECT palisade.require_permission('records.read_own');
SELECT current_setting('app.permissions', true), nullif(current_setting('app.user_id', true), '')::uuid, nullif(current_setting('app.api_key_id', true), '')::uuid;
SELECT name, schema, version, schema_id, created_at, updated_at FROM palisade.collections WHERE tenant_id = :org AND name = :coll;
SELECT r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at, NULL::jsonb, r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = :org AND r.collection = :coll AND r.id = :rec;
COMMIT;
SQL
cat >"$WORK/events.sql" <<SQL
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) SELECT e.id, :org, e.at, e.actor_kind, e.actor_id, CASE WHEN e.shown THEN 'record.sensitive_read' ELSE 'record.sensitive_denied' END, 'record', e.target, e.ip, e.user_agent, e.request_id, CASE WHEN e.shown THEN 'success' ELSE 'denied' END, e.details FROM unnest(ARRAY(SELECT $V7 FROM generate_series(1, 16)), array_fill(now(), ARRAY[16]), array_fill('user'::text, ARRAY[16]), array_fill('$OWNER_UUID'::uuid, ARRAY[16]), array_fill(true, ARRAY[16]), array_fill(:rec::uuid, ARRAY[16]), array_fill('127.0.0.1'::inet, ARRAY[16]), array_fill('pgbench'::text, ARRAY[16]), array_fill('req'::text, ARRAY[16]), array_fill('{"collection": "people", "fields": ["salary", "ssn"]}'::jsonb, ARRAY[16])) AS e(id, at, actor_kind, actor_id, shown, target, ip, user_agent, request_id, details);
COMMIT;
SQL
pgb_get() { # collection record-uuid seconds [events]: reads/s (with "events", plus a 16-event write per 16 reads)
  local scripts=(-f "$WORK/get.sql")
  [ "${4:-}" = events ] && scripts=(-f "$WORK/get.sql@16" -f "$WORK/events.sql@1")
  PGUSER=palisade_app PGPASSWORD="$APP_PW" pgbench -n -M prepared -c 16 -j 2 -T "$3" \
    -D hash="\\x$SESSION_HEX" -D org="$ORG_UUID" -D coll="$1" -D rec="$2" "${scripts[@]}" >"$WORK/pgbench.txt" 2>&1 \
    || { cat "$WORK/pgbench.txt" >&2; return 1; }
  if [ "${4:-}" = events ]; then
    awk '/^SQL script 1:/ {s = 1} s && /tps = / {gsub(/[(),]/, " "); for (i = 1; i <= NF; i++) if ($i == "=") {print $(i + 1); exit}}' "$WORK/pgbench.txt"
  else
    awk '/^tps = /{print $3}' "$WORK/pgbench.txt"
  fi
}
echo "==> 1b. the same two GET transactions in pgbench (the database's share; $RUNS run(s) of four ${LEG}s legs: S P P S)"
pgb_get people "$SENS_UUID" "$WARMUP" events >/dev/null; pgb_get plain "$PLAIN_UUID" "$WARMUP" >/dev/null
declare -a DB_RATIOS DB_SENS DB_PLAIN
for run in $(seq 1 "$RUNS"); do # the same four-leg order as wrk's runs: S P P S
  s1=$(pgb_get people "$SENS_UUID" "$LEG" events); p1=$(pgb_get plain "$PLAIN_UUID" "$LEG")
  p2=$(pgb_get plain "$PLAIN_UUID" "$LEG"); s2=$(pgb_get people "$SENS_UUID" "$LEG" events)
  s=$(mean2 "$s1" "$s2"); p=$(mean2 "$p1" "$p2")
  DB_SENS+=("$s"); DB_PLAIN+=("$p"); DB_RATIOS+=("$(ratio "$s" "$p")")
  echo "    sensitive record $s tx/s, plain record $p tx/s"
done

echo "==> 2. seeding $RECORDS records with sensitive fields (through the API)"
cat >"$WORK/create.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"data":{"name":"p%d","team":"t%d","ssn":"%09d","salary":%d}}', n, n % 7, n, n % 9000)
  return wrk.format("POST", os.getenv("BENCH_PATH"), {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}, body)
end
LUA
# In bursts of at most 5 s (shorter steps, shorter bursts), until there are enough.
SEED_S=$(( STEP < 5 ? STEP : 5 ))
until [ "$(psql_admin -c "SELECT count(*) >= $RECORDS FROM palisade.records WHERE collection = 'people'")" = t ]; do
  BENCH_PATH="/api/v1/orgs/$ORG/collections/people/records" BENCH_TOKEN="$TOKEN" wrk -t 2 -c 16 -d "${SEED_S}s" -s "$WORK/create.lua" "$B" >/dev/null
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
  PALISADE_DATABASE_KEYS_URL="host=$PGHOST port=5432 user=palisade_app_keys password=$KEYS_PW dbname=palisade" \
  "$BIN" keys rotate --org "$ORG" | tee "$WORK/rotate.txt"
ROTATE_S=$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}')
MOVED=$(grep -o '[0-9]* values re-encrypted' "$WORK/rotate.txt" | awk '{print $1}')
ROTATE_RATE=$(awk -v n="$MOVED" -v s="$ROTATE_S" 'BEGIN {printf "%.0f", n/s}')
ROTATE_RATIO=$(ratio "$ROTATE_RATE" "$UPDATE_RATE")
[ "$(psql_admin -c "SELECT count(DISTINCT palisade.envelope_key(sealed)) FROM palisade.records WHERE sealed IS NOT NULL")" = 1 ]
[ "$(curl -sf -H "Authorization: Bearer $TOKEN" "$SENS_URL" | jq -r .data.ssn)" = "078-05-1120" ]
echo "    $MOVED values in ${ROTATE_S}s: $ROTATE_RATE values/s = $ROTATE_RATIO x the plain UPDATE"

if [ "$RUNS" = 1 ]; then NOTE="1 run of six ${LEG} s legs, S P M M P S (no median)"; else NOTE="median of $RUNS runs' ratios, each six ${LEG} s legs: S P M M P S"; fi
LNOTE="median over the legs ($((RUNS * 2)) of ${LEG} s each)"
figure "GET a record with sensitive fields in clear (decrypted, audited) vs the same shape with no sensitive field" \
  "$SENS_RPS" req/s "$PLAIN_RPS" "$READ_RATIO" 0.9 "$NOTE"
figure "same, vs a member's masked read of the same record (the cryptography alone)" \
  "$SENS_RPS" req/s "$MASKED_RPS" "$CRYPTO_RATIO" "" "$NOTE"
figure "GET latency p50, sensitive fields in clear" "$(med "${S50[@]}")" ms "" "" "" "$LNOTE"
figure "GET latency p99, sensitive fields in clear" "$(med "${S99[@]}")" ms "" "" "" "$LNOTE"
figure "GET latency p50, no sensitive field" "$(med "${P50[@]}")" ms "" "" "" "$LNOTE"
figure "GET latency p99, no sensitive field" "$(med "${P99[@]}")" ms "" "" "" "$LNOTE"
figure "GET latency p50, masked read" "$(med "${M50[@]}")" ms "" "" "" "$LNOTE"
figure "GET latency p99, masked read" "$(med "${M99[@]}")" ms "" "" "" "$LNOTE"
figure "data-key rotation (palisade keys rotate --org) vs batched plain UPDATE of the same column" \
  "$ROTATE_RATE" values/s "$UPDATE_RATE" "$ROTATE_RATIO" 0.5 "1 run (a rotation moves every value once); $N values"
figure "pgbench of the server's GET transaction: sensitive record (its audit event written in a group of 16) vs plain record (nothing written)" \
  "$(med "${DB_SENS[@]}")" tx/s "$(med "${DB_PLAIN[@]}")" "$(med "${DB_RATIOS[@]}")" "" \
  "median of $RUNS runs' ratios, each four ${LEG} s legs S P P S; runtime role, owner's session, 16 clients, reads/s: about the most the server's ratio could be"
write_results encryption
