#!/usr/bin/env bash
# Records and audit benchmark (the Roles/Records issue), every figure against a baseline measured
# in the same run on the same machine:
#  1. record creates with the audit write vs the same transaction without it (pgbench, the
#     server's own pipelined statements), writers over 16 organizations and all in one;
#     plus the server's POST rate (wrk) for reference;
#  2. single record GET (wrk) vs pgbench -M prepared of the same transaction, plain and pipelined;
#     record list (50 per page, wrk) vs pgbench -M prepared of the same two transactions;
#  3. chain verification (`palisade audit verify`) of 1,000,000 events vs COPY of the same rows;
#  4. audit export (JSONL over HTTP) MB/s vs COPY … TO STDOUT of the same rows.
# p50/p99 latency of every wrk figure is reported. Release build, loopback only, bounded steps.
# Writes bench/results/records.json.
#   bench/records.sh [seconds-per-step] [events]   (defaults 10, 1000000)
#   env: BENCH_RUNS (3), BENCH_WARMUP (3 s)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
EVENTS=${2:-1000000}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-3}
PORT=${BENCH_PORT:-18933}
source bench/lib.sh
bench_prepare -p palisade-server --bin palisade
BIN=$PWD/target/release/palisade
WORK=$(bench_workdir records)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; remove_workdir; }
trap cleanup EXIT

start_palisade "$PORT"
embedded_pg_env

PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
# The outbox's verification link is not needed: the bench marks the address verified directly.
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
# The proof the server hands enter_tenant for a bearer access token (lib.sh, BEARER_PROOF).
TOKEN_HASH=$(psql_admin -c "SELECT encode($BEARER_PROOF, 'hex') FROM palisade.sessions s ORDER BY s.created_at DESC LIMIT 1")
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
# The server's create transaction (records::create + audit::record, its actor the session's user),
# pipelined as it sends it;
# the quota check carries the default policy's limits (1M records, 1 GiB) and the data's size.
create_sql() { # $1 = org chooser expression, $2 = with audit (1/0)
  local audit=""
  [ "$2" = 1 ] && audit="INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) SELECT $V7, (SELECT org FROM public.bench_orgs WHERE i = :i), now(), CASE WHEN true THEN CASE WHEN NULL::uuid IS NULL AND c.api_key_id IS NOT NULL THEN 'api_key' ELSE 'user' END END, CASE WHEN true THEN coalesce(NULL::uuid, c.api_key_id, c.user_id) END, 'record.created', 'record', $V7, '127.0.0.1', 'pgbench', 'req', 'success', '{\"collection\": \"work_orders\", \"fields\": [\"status\", \"title\"]}' FROM (SELECT nullif(current_setting('app.user_id', true), '')::uuid AS user_id, nullif(current_setting('app.api_key_id', true), '')::uuid AS api_key_id, nullif(current_setting('app.session_id', true), '')::uuid AS session_id) c;"
  cat <<SQL
$1
\\startpipeline
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), (SELECT org FROM public.bench_orgs WHERE i = :i));
SELECT palisade.require_permission('records.create');
SELECT current_setting('app.permissions', true);
SELECT palisade.lock_collection('work_orders', (SELECT schema_id FROM public.bench_orgs WHERE i = :i));
SELECT palisade.require_members('{}');
SELECT palisade.require_record_quota(1000000, 1073741824, 34);
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
# The server's GET transaction (App::get_record: Tx::tenant, require, caller, collections::get,
# records::get; read-only: a record with sensitive fields has its audit event written by a
# transaction of its own, see access_events, and these records have none).
GET_BODY="BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
SELECT palisade.require_permission('records.read_own');
SELECT current_setting('app.permissions', true), nullif(current_setting('app.user_id', true), '')::uuid, nullif(current_setting('app.api_key_id', true), '')::uuid;
SELECT name, schema, version, schema_id, created_at, updated_at FROM palisade.collections WHERE tenant_id = :org AND name = 'work_orders';
SELECT r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at, NULL::jsonb, r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = :org AND r.collection = 'work_orders' AND r.id = :rec;
COMMIT;"
printf '%s\n' "$GET_BODY" >"$WORK/get_plain.sql"
printf '\\startpipeline\n%s\n\\endpipeline\n' "$GET_BODY" >"$WORK/get_pipe.sql"
# The server's list (App::list_records, first page, no filter, sorted by id, ?limit=50): two
# transactions per request — fresh_schema (the collection, to parse the query against) and the
# page itself, which asks for limit + 1 rows to know whether there is a next page. The statements
# are records::LIST_BY_ID_ASC with the server's parameters: no cursor (NULL), no filter (empty
# arrays), limit 51, between the planner settings of Tx::push_in_index_order. pgbench counts the
# script (both transactions) as one transaction.
LIST_BODY="BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
SELECT name, schema, version, schema_id, created_at, updated_at FROM palisade.collections WHERE tenant_id = :org AND name = 'work_orders';
COMMIT;
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
SELECT palisade.require_permission('records.read_own');
SELECT current_setting('app.permissions', true);
SELECT name, schema, version, schema_id, created_at, updated_at FROM palisade.collections WHERE tenant_id = :org AND name = 'work_orders';
SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true);
SELECT r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at, NULL::jsonb, r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = :org AND r.collection = 'work_orders' AND NOT EXISTS (SELECT 1 FROM unnest(:fields::text[], :ops::text[], :vals::jsonb[]) AS f(field, op, value) WHERE NOT coalesce(CASE f.op WHEN 'eq' THEN r.data -> f.field = f.value WHEN 'ne' THEN r.data -> f.field <> f.value WHEN 'in' THEN f.value @> jsonb_build_array(r.data -> f.field) WHEN 'gt' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field > f.value WHEN 'gte' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field >= f.value WHEN 'lt' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field < f.value WHEN 'lte' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field <= f.value ELSE false END, false)) ORDER BY r.id LIMIT :lim;
SELECT set_config('enable_sort', 'on', true), set_config('enable_bitmapscan', 'on', true), set_config('enable_seqscan', 'on', true);
COMMIT;"
printf '%s\n' "$LIST_BODY" >"$WORK/list_plain.sql"
# Pipelined as the server sends it: each transaction in one flight, the second after the first.
awk '/^BEGIN;$/ {print "\\startpipeline"} {print} /^COMMIT;$/ {print "\\endpipeline"}' "$WORK/list_plain.sql" >"$WORK/list_pipe.sql"

pgb() { # file seconds: tx/s (pgbench's output is shown if it fails)
  PGUSER=palisade_app PGPASSWORD="$APP_PW" pgbench -n -M prepared -c 16 -j 2 -T "$2" \
    -D hash="\\x$TOKEN_HASH" -D org="$ORG1" -D rec="$REC_UUID" -D fields='{}' -D ops='{}' -D vals='{}' -D lim=51 \
    -f "$1" >"$WORK/pgbench.txt" 2>&1 || { cat "$WORK/pgbench.txt" >&2; return 1; }
  awk '/^tps = /{print $3}' "$WORK/pgbench.txt"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

# The machine's speed drifts by 10-20 % over seconds (a shared virtual machine: pgbench of the
# same script in back-to-back 5 s runs measured 1,520 to 2,270 tx/s), so each run is four short
# legs in the order with, without, without, with (the drift cancels to first order) and its ratio
# is the with-legs' sum over the without-legs'. Every leg starts settled (settle_db).
LEG=$((STEP >= 5 ? 2 : 1))
echo "==> 1. record creates, with vs without the audit write ($RUNS run(s) of four ${LEG}s legs: with, without, without, with)"
pgb "$WORK/create16_audit.sql" "$WARMUP" >/dev/null # warm-up
legs() { # with-audit.sql without.sql: "with without" (tx/s, each the mean of its two legs)
  local w1 p1 p2 w2
  settle_db; w1=$(pgb "$1" "$LEG"); settle_db; p1=$(pgb "$2" "$LEG")
  settle_db; p2=$(pgb "$2" "$LEG"); settle_db; w2=$(pgb "$1" "$LEG")
  awk -v a="$w1" -v b="$w2" -v c="$p1" -v d="$p2" 'BEGIN {printf "%.1f %.1f\n", (a + b) / 2, (c + d) / 2}'
}
declare -a R16 R1 A16 A1
for run in $(seq 1 "$RUNS"); do
  read -r a16 p16 < <(legs "$WORK/create16_audit.sql" "$WORK/create16_plain.sql")
  read -r a1 p1 < <(legs "$WORK/create1_audit.sql" "$WORK/create1_plain.sql")
  R16+=("$(ratio "$a16" "$p16")"); R1+=("$(ratio "$a1" "$p1")"); A16+=("$a16"); A1+=("$a1")
  echo "    16 orgs: $a16 with audit / $p16 without; 1 org: $a1 / $p1"
done
RATIO16=$(printf '%s\n' "${R16[@]}" | median); RATIO1=$(printf '%s\n' "${R1[@]}" | median)
AUDIT16=$(printf '%s\n' "${A16[@]}" | median)
echo "==> server POST …/records over 16 orgs (wrk, $RUNS run(s) of ${STEP}s)"
declare -a POSTS POST50 POST99
BENCH_ORGS="${ORGS[*]}" BENCH_TOKEN="$TOKEN" wrk -t 2 -c 16 -d "${WARMUP}s" -s bench/records.lua "$B" >/dev/null
for run in $(seq 1 "$RUNS"); do
  BENCH_ORGS="${ORGS[*]}" BENCH_TOKEN="$TOKEN" wrk -t 2 -c 16 -d "${STEP}s" --latency -s bench/records.lua "$B" >"$WORK/wrk_post.txt"
  wrk_ok "$WORK/wrk_post.txt"
  read -r rps p50 p99 < <(wrk_stats "$WORK/wrk_post.txt"); POSTS+=("$rps"); POST50+=("$p50"); POST99+=("$p99")
  echo "    $rps creates/s (p50 $p50 ms, p99 $p99 ms)"
done
POST=$(printf '%s\n' "${POSTS[@]}" | median)

GET_URL="$B/api/v1/orgs/$FIRST/collections/work_orders/records/$REC"
LIST_URL="$B/api/v1/orgs/$FIRST/collections/work_orders/records?limit=50"
# The list must return a full page (the creates above filled the first organization).
[ "$(curl -sf -H "Authorization: Bearer $TOKEN" "$LIST_URL" | jq '.items | length')" = 50 ] \
  || { echo "the list did not return 50 records" >&2; exit 1; }
echo "==> 2. single record GET and list of 50 (wrk) vs pgbench plain and pipelined ($RUNS run(s) of ${STEP}s each)"
wrk -t 2 -c 16 -d "${WARMUP}s" -H "Authorization: Bearer $TOKEN" "$GET_URL" >/dev/null
wrk -t 2 -c 16 -d "${WARMUP}s" -H "Authorization: Bearer $TOKEN" "$LIST_URL" >/dev/null
pgb "$WORK/get_plain.sql" "$WARMUP" >/dev/null; pgb "$WORK/list_plain.sql" "$WARMUP" >/dev/null
declare -a GETS GET50 GET99 GPLAINS GPIPES LISTS LIST50 LIST99 LPLAINS LPIPES
for run in $(seq 1 "$RUNS"); do
  wrk -t 2 -c 16 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$GET_URL" >"$WORK/wrk_get.txt"
  wrk_ok "$WORK/wrk_get.txt"
  read -r rps p50 p99 < <(wrk_stats "$WORK/wrk_get.txt"); GETS+=("$rps"); GET50+=("$p50"); GET99+=("$p99")
  GPLAINS+=("$(pgb "$WORK/get_plain.sql" "$STEP")"); GPIPES+=("$(pgb "$WORK/get_pipe.sql" "$STEP")")
  echo "    GET: server $rps req/s (p50 $p50 ms, p99 $p99 ms); pgbench plain ${GPLAINS[-1]}, pipelined ${GPIPES[-1]}"
  wrk -t 2 -c 16 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$LIST_URL" >"$WORK/wrk_list.txt"
  wrk_ok "$WORK/wrk_list.txt"
  read -r rps p50 p99 < <(wrk_stats "$WORK/wrk_list.txt"); LISTS+=("$rps"); LIST50+=("$p50"); LIST99+=("$p99")
  LPLAINS+=("$(pgb "$WORK/list_plain.sql" "$STEP")"); LPIPES+=("$(pgb "$WORK/list_pipe.sql" "$STEP")")
  echo "    list: server $rps req/s (p50 $p50 ms, p99 $p99 ms); pgbench plain ${LPLAINS[-1]}, pipelined ${LPIPES[-1]}"
done
GET=$(printf '%s\n' "${GETS[@]}" | median); GPLAIN=$(printf '%s\n' "${GPLAINS[@]}" | median); GPIPE=$(printf '%s\n' "${GPIPES[@]}" | median)
LIST=$(printf '%s\n' "${LISTS[@]}" | median); LPLAIN=$(printf '%s\n' "${LPLAINS[@]}" | median); LPIPE=$(printf '%s\n' "${LPIPES[@]}" | median)

echo "==> 3. seeding $EVENTS audit events into one organization, then sealing them"
# In transactions of 10,000 events, as a busy organization writes them over time. Event ids are
# UUIDv7 minted from the event's time, as the server mints them (48-bit milliseconds, version 7,
# variant 10, random rest): random v4 ids would scatter every index lookup by id.
psql_admin -c "DO \$\$ BEGIN FOR b IN 0 .. ($EVENTS - 1) / 10000 LOOP
  INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details)
  SELECT (lpad(to_hex((extract(epoch FROM t.at) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid,
    '$ORG1', t.at, 'user', u.id, 'record.updated', 'record', gen_random_uuid(), '10.0.0.1', 'bench-agent/1.0', 'req_' || g, 'success', '{\"collection\": \"work_orders\", \"fields\": [\"hours\", \"status\"]}'
  FROM generate_series(b * 10000 + 1, least((b + 1) * 10000, $EVENTS)) g, LATERAL (SELECT now() - (g * interval '1 millisecond') AS at) t, (SELECT id FROM palisade.users LIMIT 1) u;
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
# libpq over the embedded cluster's socket (embedded_pg_env found it).
ADMIN_URL="host=$PGHOST port=$PGPORT user=palisade_admin password=$ADMIN_PW dbname=palisade"
APP_URL="host=$PGHOST port=$PGPORT user=palisade_app password=$APP_PW dbname=palisade"
COPY_SQL="COPY (SELECT c.seq, c.hash, e.id, e.tenant_id, (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.actor_kind, e.actor_id::text, e.action, e.target_kind, e.target_id::text, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details::text FROM palisade.audit_chain c LEFT JOIN palisade.audit_events e ON e.id = c.event_id AND e.tenant_id = c.tenant_id WHERE c.tenant_id = '$ORG1' ORDER BY c.seq) TO STDOUT"
timed() { local s; s=$(date +%s.%N); "$@" >/dev/null; awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}'; }
declare -a VER COPYT
for run in $(seq 1 "$RUNS"); do
  VER+=("$(timed env PALISADE_DATABASE_URL="$APP_URL" PALISADE_DATABASE_ADMIN_URL="$ADMIN_URL" "$BIN" audit verify --org "$FIRST" --json)")
  COPYT+=("$(timed psql_admin -c "$COPY_SQL")")
  echo "    run $run/$RUNS: verify ${VER[-1]}s, COPY ${COPYT[-1]}s"
done
VERIFY_S=$(printf '%s\n' "${VER[@]}" | median); COPY_S=$(printf '%s\n' "${COPYT[@]}" | median)
VALID=$(PALISADE_DATABASE_URL="$APP_URL" PALISADE_DATABASE_ADMIN_URL="$ADMIN_URL" "$BIN" audit verify --org "$FIRST" --json | jq -r .valid)
[ "$VALID" = true ] || { echo "the chain did not verify" >&2; exit 1; }
echo "    verify ${VERIFY_S}s vs COPY ${COPY_S}s (medians of $RUNS)"

echo "==> 4. audit export (JSONL) vs COPY of the same rows ($RUNS alternating run(s))"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
EXPORT_COPY_SQL="COPY (SELECT e.id, e.occurred_at, e.actor_kind, e.actor_id, e.action, e.target_kind, e.target_id, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details, c.seq FROM palisade.audit_events e LEFT JOIN palisade.audit_chain c ON c.event_id = e.id AND c.tenant_id = e.tenant_id WHERE e.tenant_id = '$ORG1' ORDER BY e.occurred_at DESC, e.id DESC) TO STDOUT"
declare -a EXPORTS COPIES
for run in $(seq 1 "$RUNS"); do
  stats=$(curl -sf -o /dev/null -w '%{size_download} %{time_total}' -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$FIRST/audit-events/export?format=jsonl")
  read -r EXPORT_BYTES EXPORT_S <<<"$stats"
  S=$(date +%s.%N); COPY_BYTES=$(psql_admin -c "$EXPORT_COPY_SQL" | wc -c); COPY_EXPORT_S=$(awk -v s="$S" -v e="$(date +%s.%N)" 'BEGIN {printf "%.3f", e-s}')
  EXPORTS+=("$(awk -v b="$EXPORT_BYTES" -v t="$EXPORT_S" 'BEGIN {printf "%.2f", b/t/1e6}')")
  COPIES+=("$(awk -v b="$COPY_BYTES" -v t="$COPY_EXPORT_S" 'BEGIN {printf "%.2f", b/t/1e6}')")
  echo "    export $EXPORT_BYTES bytes in ${EXPORT_S}s = ${EXPORTS[-1]} MB/s; COPY $COPY_BYTES bytes in ${COPY_EXPORT_S}s = ${COPIES[-1]} MB/s"
done
EXPORT_MBS=$(printf '%s\n' "${EXPORTS[@]}" | median); COPY_MBS=$(printf '%s\n' "${COPIES[@]}" | median)

NOTE=$(runs_note)
if [ "$RUNS" = 1 ]; then ONE="1 run (no median)"; else ONE="median of $RUNS runs"; fi
figure "record create with audit vs without, 16 orgs (pgbench)" "$RATIO16" ratio "" "" 0.8 "median of $RUNS runs, each four ${LEG} s legs with, without, without, with"
figure "record create with audit vs without, 1 org (pgbench)" "$RATIO1" ratio "" "" "" "median of $RUNS runs, each four ${LEG} s legs with, without, without, with"
figure "server POST …/records over 16 orgs vs pgbench of its transaction with audit" "$POST" req/s "$AUDIT16" "" "" "$NOTE"
figure "server POST …/records latency p50" "$(printf '%s\n' "${POST50[@]}" | median)" ms "" "" "" "$NOTE"
figure "server POST …/records latency p99" "$(printf '%s\n' "${POST99[@]}" | median)" ms "" "" "" "$NOTE"
figure "single record GET vs pgbench -M prepared plain" "$GET" req/s "$GPLAIN" "" 0.5 "$NOTE"
figure "single record GET vs pgbench pipelined" "$GET" req/s "$GPIPE" "" 0.25 "$NOTE"
figure "single record GET latency p50" "$(printf '%s\n' "${GET50[@]}" | median)" ms "" "" "" "$NOTE"
figure "single record GET latency p99" "$(printf '%s\n' "${GET99[@]}" | median)" ms "" "" "" "$NOTE"
figure "record list (50 per page) req/s vs pgbench -M prepared plain" "$LIST" req/s "$LPLAIN" "" 0.5 "$NOTE; baseline = the request's two transactions"
figure "record list (50 per page) req/s vs pgbench pipelined" "$LIST" req/s "$LPIPE" "" "" "$NOTE; the database's own limit for the work"
figure "record list (50 per page) latency p50" "$(printf '%s\n' "${LIST50[@]}" | median)" ms "" "" "" "$NOTE"
figure "record list (50 per page) latency p99" "$(printf '%s\n' "${LIST99[@]}" | median)" ms "" "" "" "$NOTE"
figure "chain verification rate vs COPY of the same rows" "$(awk -v n="$CHAINED" -v t="$VERIFY_S" 'BEGIN {printf "%.0f", n/t}')" events/s \
  "$(awk -v n="$CHAINED" -v t="$COPY_S" 'BEGIN {printf "%.0f", n/t}')" "" 0.8 "$ONE; $CHAINED events"
# The 10 s target is for a chain of ~1M events; a smaller chain (quick mode) is reported only.
if [ "$CHAINED" -ge 1000000 ]; then VERIFY_TARGET=10; else VERIFY_TARGET=""; fi
figure "seconds to verify the chain (palisade audit verify, whole process)" "$VERIFY_S" s "" "" "$VERIFY_TARGET" "$ONE; $CHAINED events"
figure "seconds to seal the seeded events" "$SEAL_S" s "" "" "" "1 run; $EVENTS events"
figure "audit export JSONL vs COPY of the same rows" "$EXPORT_MBS" MB/s "$COPY_MBS" "" 0.8 "$ONE; $CHAINED events"
write_results records
