#!/usr/bin/env bash
# Records and audit benchmark (the Roles/Records issue), every figure against a baseline measured
# in the same run on the same machine:
#  1. record creates with the audit write vs the same transaction without it (pgbench, the
#     server's own pipelined statements), writers over 16 organizations and all in one;
#     plus the server's POST rate (wrk) for reference;
#  2. single record GET (wrk) vs pgbench -M prepared of the same transaction, plain and pipelined;
#  3. chain verification (`palisade audit verify`) of 1,000,000 events vs COPY of the same rows;
#  4. audit export (JSONL over HTTP) MB/s vs COPY … TO STDOUT of the same rows.
# Release build, loopback only, bounded steps. Writes bench/results/records.json.
#   bench/records.sh [seconds-per-step] [events]   (defaults 10, 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
EVENTS=${2:-1000000}
PORT=${BENCH_PORT:-18933}
bash scripts/ensure-deps.sh run
command -v wrk >/dev/null || { echo "==> apt-get install wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { echo "==> apt-get install jq"; apt-get install -y -qq jq >/dev/null; }

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-bench-rec.XXXXXX)
chmod 711 "$WORK"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/lib.sh
start_palisade "$PORT"
embedded_pg_env

PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
# The outbox's verification link is not needed: the bench marks the address verified directly.
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
# The proof the server hands enter_tenant for a bearer access token: its session's id (16 bytes).
TOKEN_HASH=$(psql_admin -c "SELECT encode(uuid_send(id), 'hex') FROM palisade.sessions ORDER BY created_at DESC LIMIT 1")
SCHEMA='{"type":"object","properties":{"title":{"type":"string"},"status":{"type":"string","enum":["open","done"]},"hours":{"type":"number"}},"required":["title","status"]}'
ORGS=()
for i in $(seq 1 16); do
  org=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "{\"name\":\"Bench $i\"}" | jq -r .id)
  curl -sf "$B/api/v1/orgs/$org/collections" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"work_orders\",\"schema\":$SCHEMA}" >/dev/null
  ORGS+=("$org")
done
FIRST=${ORGS[0]}
REC=$(curl -sf "$B/api/v1/orgs/$FIRST/collections/work_orders/records" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"data":{"title":"read me","status":"open"}}' | jq -r .id)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$FIRST/collections/work_orders/records/$REC")" = 200 ]

# Per-org facts pgbench needs, in a table the runtime role may read.
psql_admin <<SQL
CREATE TABLE public.bench_orgs AS
  SELECT row_number() OVER (ORDER BY c.created_at)::int AS i, c.tenant_id AS org, c.schema_id
    FROM palisade.collections c;
GRANT SELECT ON public.bench_orgs TO palisade_app;
SQL
REC_UUID=$(psql_admin -c "SELECT id FROM palisade.records LIMIT 1")
ORG1=$(psql_admin -c "SELECT org FROM public.bench_orgs WHERE i = 1")

# Time-ordered ids, as the server's UUIDv7 ids are (random ones would cost index page splits the
# server never pays).
V7="(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 16, '0') || substr(md5(random()::text), 1, 16))::uuid"
# The server's create transaction (records::create + audit::record), pipelined as it sends it.
create_sql() { # $1 = org chooser expression, $2 = with audit (1/0)
  local audit=""
  [ "$2" = 1 ] && audit="INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) VALUES ($V7, (SELECT org FROM public.bench_orgs WHERE i = :i), now(), 'user', palisade.current_user_id(), 'record.created', 'record', $V7, '127.0.0.1', 'pgbench', 'req', 'success', '{\"collection\": \"work_orders\", \"fields\": [\"status\", \"title\"]}');"
  cat <<SQL
$1
\\startpipeline
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), (SELECT org FROM public.bench_orgs WHERE i = :i));
SELECT palisade.require_permission('records.create');
SELECT current_setting('app.permissions', true);
SELECT palisade.lock_collection('work_orders', (SELECT schema_id FROM public.bench_orgs WHERE i = :i));
SELECT palisade.require_members('{}');
INSERT INTO palisade.records AS r (tenant_id, id, collection, data, created_by, assignees, created_at, updated_at) VALUES ((SELECT org FROM public.bench_orgs WHERE i = :i), $V7, 'work_orders', '{"title": "job", "status": "open"}', palisade.current_user_id(), '{}', now(), now()) RETURNING r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at;
$audit
COMMIT;
\\endpipeline
SQL
}
create_sql '\set i random(1, 16)' 1 >"$WORK/create16_audit.sql"
create_sql '\set i random(1, 16)' 0 >"$WORK/create16_plain.sql"
create_sql '\set i 1' 1 >"$WORK/create1_audit.sql"
create_sql '\set i 1' 0 >"$WORK/create1_plain.sql"
# The server's GET transaction (records::get with the collection and the caller's permissions).
GET_BODY="BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
SELECT palisade.require_permission('records.read_own');
SELECT current_setting('app.permissions', true);
SELECT name, schema, version, schema_id, created_at, updated_at FROM palisade.collections WHERE tenant_id = :org AND name = 'work_orders';
SELECT r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at, NULL::jsonb FROM palisade.records r WHERE r.tenant_id = :org AND r.collection = 'work_orders' AND r.id = :rec;
COMMIT;"
printf '%s\n' "$GET_BODY" >"$WORK/get_plain.sql"
printf '\\startpipeline\n%s\n\\endpipeline\n' "$GET_BODY" >"$WORK/get_pipe.sql"

pgb() { # file seconds
  PGUSER=palisade_app PGPASSWORD="$APP_PW" pgbench -n -M prepared -c 16 -j 2 -T "$2" \
    -D hash="\\x$TOKEN_HASH" -D org="$ORG1" -D rec="$REC_UUID" -f "$1" 2>&1 | awk '/^tps = /{print $3}'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

echo "==> 1. record creates, with vs without the audit write (3 alternating runs of ${STEP}s each)"
declare -a R16 R1 A16 A1
for run in 1 2 3; do
  a16=$(pgb "$WORK/create16_audit.sql" "$STEP"); p16=$(pgb "$WORK/create16_plain.sql" "$STEP")
  a1=$(pgb "$WORK/create1_audit.sql" "$STEP"); p1=$(pgb "$WORK/create1_plain.sql" "$STEP")
  R16+=("$(ratio "$a16" "$p16")"); R1+=("$(ratio "$a1" "$p1")"); A16+=("$a16"); A1+=("$a1")
  echo "    16 orgs: $a16 with audit / $p16 without; 1 org: $a1 / $p1"
done
RATIO16=$(printf '%s\n' "${R16[@]}" | median); RATIO1=$(printf '%s\n' "${R1[@]}" | median)
AUDIT16=$(printf '%s\n' "${A16[@]}" | median)
echo "==> server POST …/records over 16 orgs (wrk, ${STEP}s)"
BENCH_ORGS="${ORGS[*]}" BENCH_TOKEN="$TOKEN" wrk -t 2 -c 16 -d "${STEP}s" -s bench/records.lua "$B" >"$WORK/wrk_post.txt"
POST=$(awk '/^Requests\/sec:/{print $2}' "$WORK/wrk_post.txt")
NON2XX=$(awk '/Non-2xx/{print $5}' "$WORK/wrk_post.txt"); [ -z "$NON2XX" ] || { cat "$WORK/wrk_post.txt"; echo "POSTs failed" >&2; exit 1; }
echo "    $POST creates/s"

echo "==> 2. single record GET (wrk) vs pgbench plain and pipelined (${STEP}s each)"
wrk -t 2 -c 16 -d 3s -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$FIRST/collections/work_orders/records/$REC" >/dev/null
wrk -t 2 -c 16 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$FIRST/collections/work_orders/records/$REC" >"$WORK/wrk_get.txt"
GET=$(awk '/^Requests\/sec:/{print $2}' "$WORK/wrk_get.txt"); GET_P99=$(awk '/^ +99%/{print $2}' "$WORK/wrk_get.txt")
GPLAIN=$(pgb "$WORK/get_plain.sql" "$STEP"); GPIPE=$(pgb "$WORK/get_pipe.sql" "$STEP")
echo "    server $GET req/s (p99 $GET_P99); pgbench plain $GPLAIN, pipelined $GPIPE"

echo "==> 3. seeding $EVENTS audit events into one organization, then sealing them"
# In transactions of 10,000 events, as a busy organization writes them over time.
psql_admin -c "DO \$\$ BEGIN FOR b IN 0 .. ($EVENTS - 1) / 10000 LOOP
  INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details)
  SELECT gen_random_uuid(), '$ORG1', now() - (g * interval '1 millisecond'), 'user', u.id, 'record.updated', 'record', gen_random_uuid(), '10.0.0.1', 'bench-agent/1.0', 'req_' || g, 'success', '{\"collection\": \"work_orders\", \"fields\": [\"hours\", \"status\"]}'
  FROM generate_series(b * 10000 + 1, least((b + 1) * 10000, $EVENTS)) g, (SELECT id FROM palisade.users LIMIT 1) u;
  COMMIT;
END LOOP; END \$\$"
START=$(date +%s.%N)
# The server's own sequencer seals them too (the two take turns): wait until the chain holds
# every event of the organization.
until [ "$(psql_admin -c "SELECT palisade.seal_audit_events(200000) >= 0 AND (SELECT seq FROM palisade.audit_chain_heads WHERE tenant_id = '$ORG1') = (SELECT count(*) FROM palisade.audit_events WHERE tenant_id = '$ORG1')")" = t ]; do sleep 0.2; done
SEAL_S=$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e-s}')
psql_admin -c "VACUUM ANALYZE palisade.audit_events"
psql_admin -c "VACUUM ANALYZE palisade.audit_chain"
CHAINED=$(psql_admin -c "SELECT seq FROM palisade.audit_chain_heads WHERE tenant_id = '$ORG1'")
echo "    $CHAINED events in the chain; sealing took ${SEAL_S}s"
ADMIN_URL="host=$SOCK port=5432 user=palisade_admin password=$ADMIN_PW dbname=palisade"
APP_URL="host=$SOCK port=5432 user=palisade_app password=$APP_PW dbname=palisade"
COPY_SQL="COPY (SELECT c.seq, c.hash, e.id, e.tenant_id, (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.actor_kind, e.actor_id::text, e.action, e.target_kind, e.target_id::text, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details::text FROM palisade.audit_chain c LEFT JOIN palisade.audit_events e ON e.id = c.event_id AND e.tenant_id = c.tenant_id WHERE c.tenant_id = '$ORG1' ORDER BY c.seq) TO STDOUT"
timed() { local s; s=$(date +%s.%N); "$@" >/dev/null; awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}'; }
declare -a VER COPYT
for run in 1 2 3; do
  VER+=("$(timed env PALISADE_DATABASE_URL="$APP_URL" PALISADE_DATABASE_ADMIN_URL="$ADMIN_URL" "$BIN" audit verify --org "$FIRST" --json)")
  COPYT+=("$(timed psql_admin -c "$COPY_SQL")")
done
VERIFY_S=$(printf '%s\n' "${VER[@]}" | median); COPY_S=$(printf '%s\n' "${COPYT[@]}" | median)
VALID=$(PALISADE_DATABASE_URL="$APP_URL" PALISADE_DATABASE_ADMIN_URL="$ADMIN_URL" "$BIN" audit verify --org "$FIRST" --json | jq -r .valid)
[ "$VALID" = true ] || { echo "the chain did not verify" >&2; exit 1; }
echo "    verify ${VERIFY_S}s vs COPY ${COPY_S}s (medians of 3)"

echo "==> 4. audit export (JSONL) vs COPY of the same rows"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
EXPORT_STATS=$(curl -sf -o /dev/null -w '%{size_download} %{time_total}' -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$FIRST/audit-events/export?format=jsonl")
read -r EXPORT_BYTES EXPORT_S <<<"$EXPORT_STATS"
EXPORT_COPY_SQL="COPY (SELECT e.id, e.occurred_at, e.actor_kind, e.actor_id, e.action, e.target_kind, e.target_id, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details, c.seq FROM palisade.audit_events e LEFT JOIN palisade.audit_chain c ON c.event_id = e.id AND c.tenant_id = e.tenant_id WHERE e.tenant_id = '$ORG1' ORDER BY e.occurred_at DESC, e.id DESC) TO STDOUT"
S=$(date +%s.%N); COPY_BYTES=$(psql_admin -c "$EXPORT_COPY_SQL" | wc -c); COPY_EXPORT_S=$(awk -v s="$S" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}')
EXPORT_MBS=$(awk -v b="$EXPORT_BYTES" -v t="$EXPORT_S" 'BEGIN {printf "%.2f", b/t/1e6}')
COPY_MBS=$(awk -v b="$COPY_BYTES" -v t="$COPY_EXPORT_S" 'BEGIN {printf "%.2f", b/t/1e6}')
echo "    export $EXPORT_BYTES bytes in ${EXPORT_S}s = $EXPORT_MBS MB/s; COPY $COPY_BYTES bytes in ${COPY_EXPORT_S}s = $COPY_MBS MB/s"

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$(nproc)" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --arg pg "$(pgbench --version | awk '{print $3}')" \
  --argjson r16 "$RATIO16" --argjson r1 "$RATIO1" --argjson a16 "$AUDIT16" --argjson post "$POST" \
  --argjson get "$GET" --argjson gplain "$GPLAIN" --argjson gpipe "$GPIPE" --arg p99 "$GET_P99" \
  --argjson events "$CHAINED" --argjson verify "$VERIFY_S" --argjson copy "$COPY_S" --argjson seal "$SEAL_S" \
  --argjson export "$EXPORT_MBS" --argjson copymbs "$COPY_MBS" '
  def fig(name; value; unit; baseline; target):
    {name: name, value: value, unit: unit, baseline: baseline,
     ratio: (if baseline then ((value / baseline) * 1000 | round / 1000) else null end),
     target: target, pass: (if target then (if baseline then (value / baseline) >= target else value >= target end) else null end)};
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber), postgresql: $pg},
   figures: [
     fig("record create with audit vs without, 16 orgs (pgbench, median ratio of 3)"; $r16; "ratio"; null; 0.8),
     fig("record create with audit vs without, 1 org (median ratio of 3)"; $r1; "ratio"; null; null),
     fig("server POST …/records over 16 orgs vs pgbench of its transaction with audit"; $post; "req/s"; $a16; null),
     fig("single record GET vs pgbench -M prepared plain"; $get; "req/s"; $gplain; 0.5),
     fig("single record GET vs pgbench pipelined"; $get; "req/s"; $gpipe; 0.25),
     {name: "single record GET p99", value: null, unit: $p99, baseline: null, ratio: null, target: null, pass: null},
     fig("chain verification rate vs COPY of the same rows (events/s)"; ($events / $verify); "events/s"; ($events / $copy); 0.8),
     {name: "seconds to verify the chain", value: $verify, unit: ("s for " + ($events|tostring) + " events"), baseline: null, ratio: null, target: 10, pass: ($verify < 10)},
     {name: "seconds to seal the seeded events", value: $seal, unit: "s", baseline: null, ratio: null, target: null, pass: null},
     fig("audit export JSONL vs COPY of the same rows"; $export; "MB/s"; $copymbs; 0.8)
   ]}' > bench/results/records.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/records.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/records.json)"
