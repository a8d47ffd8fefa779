#!/usr/bin/env bash
# Scaling and cost growth (issue #9):
#  1. cost growth: single-record GET and list-of-50 req/s with 1k, 100k and 1M records in one
#     organization (quick mode: 1k, 10k, 100k), each vs the 1k figure of the same run;
#  2. scaling: the same single-record GET load split over 2 server nodes sharing the one
#     PostgreSQL (node 2 reaches node 1's embedded cluster over its socket and shares its key
#     files, as a shared volume would) vs all of it on 1 node. Reported only: on a 2-core machine
#     the nodes, PostgreSQL and wrk share the same cores, so this shows the cost of a second node
#     more than a gain.
# Records are seeded straight into the table as the admin role (the usage trigger still counts
# them); every measured request goes through the server.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
STEP=${1:-5}
shift || true
SIZES=${*:-1000 100000 1000000}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-3}
PORT=18480; PORT2=18481
bench_prepare -p palisade-server --bin palisade
BIN=${BENCH_BIN:-$PWD/target/release/palisade} # BENCH_BIN: try the script on another build
WORK=$(bench_workdir scale)
SERVER_PID=""; SERVER2_PID=""
cleanup() {
  for pid in "$SERVER2_PID" "$SERVER_PID"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  remove_workdir
}
trap cleanup EXIT

start_palisade "$PORT"
embedded_pg_env
PASSWORD="violet-kettle-orbit-93"
curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" >/dev/null
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$(curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)
SCHEMA='{"type":"object","properties":{"title":{"type":"string"},"status":{"type":"string","enum":["open","done"]},"hours":{"type":"number"}},"required":["title","status"]}'
curl -sf "$B/api/v1/orgs/$ORG/collections" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"name\":\"work_orders\",\"schema\":$SCHEMA}" >/dev/null
REC=$(curl -sf "$B/api/v1/orgs/$ORG/collections/work_orders/records" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"data":{"title":"read me","status":"open","hours":3}}' | jq -r .id)
ORG_UUID=$(psql_admin -c "SELECT tenant_id FROM palisade.orgs LIMIT 1")
USER_UUID=$(psql_admin -c "SELECT id FROM palisade.users LIMIT 1")
GET_PATH="/api/v1/orgs/$ORG/collections/work_orders/records/$REC"
LIST_PATH="/api/v1/orgs/$ORG/collections/work_orders/records?limit=50"

# seed_to N: adds records until the organization holds N (time-ordered ids, as the server's).
seed_to() {
  local have
  have=$(psql_admin -c "SELECT count(*) FROM palisade.records WHERE tenant_id = '$ORG_UUID'")
  [ "$have" -ge "$1" ] && return 0
  # Triggers off for the bulk insert (session_replication_role, the embedded admin is a
  # superuser): the per-row usage trigger made 100k rows take 57 s, so 1M did not fit the step's
  # time limit. The usage counters are recounted exactly right after, in the same transaction.
  psql_admin -c "
    BEGIN;
    SET LOCAL session_replication_role = replica;
    INSERT INTO palisade.records (tenant_id, id, collection, data, created_by, created_at, updated_at)
    SELECT '$ORG_UUID',
           (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 16, '0') || substr(md5(random()::text), 1, 16))::uuid,
           'work_orders', jsonb_build_object('title', 'seeded ' || g, 'status', 'open', 'hours', g % 40),
           '$USER_UUID', now(), now()
      FROM generate_series($have + 1, $1) g;
    SET LOCAL session_replication_role = origin;
    INSERT INTO palisade.org_usage AS u (tenant_id, shard, records, bytes)
    SELECT tenant_id, (hashtext(id::text) & 15)::smallint, count(*), sum(pg_column_size(data))
      FROM palisade.records WHERE tenant_id = '$ORG_UUID' GROUP BY 1, 2
    ON CONFLICT (tenant_id, shard) DO UPDATE SET records = excluded.records, bytes = excluded.bytes;
    COMMIT;
    ANALYZE palisade.records;" >/dev/null
}

# measure URL-PATH: median req/s (+ p50/p99) of RUNS wrk runs against node 1.
measure() {
  local path=$1 r50 r99 rps
  local -a RPS P50 P99
  wrk -t 2 -c 16 -d "${WARMUP}s" -H "Authorization: Bearer $TOKEN" "$B$path" >/dev/null
  for _ in $(seq 1 "$RUNS"); do
    wrk -t 2 -c 16 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$B$path" >"$WORK/wrk.txt"
    wrk_ok "$WORK/wrk.txt"
    read -r rps r50 r99 < <(wrk_stats "$WORK/wrk.txt"); RPS+=("$rps"); P50+=("$r50"); P99+=("$r99")
  done
  echo "$(printf '%s\n' "${RPS[@]}" | median) $(printf '%s\n' "${P50[@]}" | median) $(printf '%s\n' "${P99[@]}" | median)"
}

NOTE=$(runs_note)
FIRST_SIZE=""; GET_BASE=""; LIST_BASE=""
for size in $SIZES; do
  echo "==> cost growth: seeding to $size records in one organization"
  t0=$(date +%s); seed_to "$size"; echo "    seeded in $(( $(date +%s) - t0 ))s"
  echo "==> single GET and list of 50 with $size records ($RUNS run(s) of ${STEP}s, 16 connections)"
  read -r g g50 g99 < <(measure "$GET_PATH")
  read -r l l50 l99 < <(measure "$LIST_PATH")
  echo "    GET $g req/s (p50 $g50 ms, p99 $g99 ms); list $l req/s (p50 $l50 ms, p99 $l99 ms)"
  if [ -z "$FIRST_SIZE" ]; then FIRST_SIZE=$size; GET_BASE=$g; LIST_BASE=$l; fi
  figure "single record GET with $size records in the org vs with $FIRST_SIZE" "$g" "req/s" "$GET_BASE" "" "" "$NOTE; p50 $g50 ms, p99 $g99 ms"
  figure "record list (50 per page) with $size records in the org vs with $FIRST_SIZE" "$l" "req/s" "$LIST_BASE" "" "" "$NOTE; p50 $l50 ms, p99 $l99 ms"
done

echo "==> scaling: the single GET load on 1 node, then split over 2 nodes on the same PostgreSQL"
read -r one one50 one99 < <(measure "$GET_PATH")
ADMIN_URL="host=$PGHOST port=$PGPORT user=palisade_admin password=$ADMIN_PW dbname=palisade"
APP_URL="host=$PGHOST port=$PGPORT user=palisade_app password=$APP_PW dbname=palisade"
SIGNIN_URL="host=$PGHOST port=$PGPORT user=palisade_app_signin password=$SIGNIN_PW dbname=palisade"
mkdir -p "$WORK/data2"
PALISADE_DATA_DIR="$WORK/data2" PALISADE_DATABASE_URL="$APP_URL" PALISADE_DATABASE_ADMIN_URL="$ADMIN_URL" \
  PALISADE_DATABASE_SIGNIN_URL="$SIGNIN_URL" \
  PALISADE_INSTANCE_KEY_FILE="$WORK/data/instance.key" PALISADE_KEK_FILE="$WORK/data/kek.key" \
  PALISADE_KEY_STORE_FILE="$WORK/data/keystore.json" PALISADE_PUBLIC_URL="$B" PALISADE_LOG_LEVEL=warn PALISADE_RATE_LIMITS=off \
  PALISADE_ACCESS_TOKEN_MINUTES=60 "$BIN" serve --listen "127.0.0.1:$PORT2" --insecure-http >"$WORK/server2.log" 2>&1 &
SERVER2_PID=$!
B2="http://127.0.0.1:$PORT2"
for _ in $(seq 1 300); do curl -sf "$B2/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$B2/readyz" >/dev/null || { cat "$WORK/server2.log"; echo "node 2 did not start" >&2; exit 1; }
# The token node 1 issued is good on node 2: same database, same signing keys, same public URL
# (the issuer and audience), as behind one load balancer.
code=$(curl -s -o "$WORK/n2-first.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B2$GET_PATH")
[ "$code" = 200 ] || { cat "$WORK/n2-first.json" "$WORK/server2.log"; echo "node 2 answered $code to node 1's token" >&2; exit 1; }
declare -a TWO
for _ in $(seq 1 "$RUNS"); do
  wrk -t 1 -c 8 -d "${STEP}s" -H "Authorization: Bearer $TOKEN" "$B$GET_PATH" >"$WORK/n1.txt" &
  w1=$!
  wrk -t 1 -c 8 -d "${STEP}s" -H "Authorization: Bearer $TOKEN" "$B2$GET_PATH" >"$WORK/n2.txt"
  wait "$w1"
  wrk_ok "$WORK/n1.txt"; wrk_ok "$WORK/n2.txt"
  TWO+=("$(awk '/^Requests\/sec:/ {s += $2} END {print s}' "$WORK/n1.txt" "$WORK/n2.txt")")
done
two=$(printf '%s\n' "${TWO[@]}" | median)
echo "    1 node $one req/s; 2 nodes $two req/s"
figure "single record GET on 2 nodes sharing PostgreSQL vs 1 node" "$two" "req/s" "$one" "" "" \
  "$NOTE; 8 + 8 connections vs 16 on one node; both nodes, PostgreSQL and wrk share 2 cores"
write_results scale
