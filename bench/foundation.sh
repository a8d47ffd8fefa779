#!/usr/bin/env bash
# Foundation benchmark: authenticated GET /api/v1/orgs/{org} (wrk) against pgbench running the
# same SQL transaction the server runs, plain and pipelined; and the cost of row-level security
# (same select, RLS-enforced role vs a BYPASSRLS role, median of 5 alternating runs).
# Release build, loopback only, every load step bounded in time. Writes bench/results/foundation.json.
#   bench/foundation.sh [seconds-per-step]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-10}
RUNS=3
PORT=${BENCH_PORT:-18931}
bash scripts/ensure-deps.sh run
command -v wrk >/dev/null || { echo "==> apt-get install wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { echo "==> apt-get install jq"; apt-get install -y -qq jq >/dev/null; }

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-bench.XXXXXX)
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
ORG=$(curl -sf "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Bench Org"}' | jq -r .id)

ORG_UUID=$(psql_admin -c "SELECT tenant_id FROM palisade.orgs LIMIT 1")
# The proof the server hands enter_tenant for a bearer access token: its session's id (16 bytes).
TOKEN_HASH=$(psql_admin -c "SELECT encode(uuid_send(id), 'hex') FROM palisade.sessions ORDER BY created_at DESC LIMIT 1")

echo "==> seeding 100k other organizations (RLS must not get slower with more tenants)"
psql_admin <<SQL
INSERT INTO palisade.tenants SELECT gen_random_uuid(), now() FROM generate_series(1, 100000);
INSERT INTO palisade.orgs SELECT id, 'Org ' || id, now(), now() FROM palisade.tenants WHERE id <> '$ORG_UUID';
ANALYZE;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_bench_bypass') THEN
    CREATE ROLE palisade_bench_bypass LOGIN BYPASSRLS PASSWORD '$APP_PW';
  END IF;
END \$\$;
GRANT CONNECT ON DATABASE palisade TO palisade_bench_bypass;
GRANT USAGE ON SCHEMA palisade TO palisade_bench_bypass;
GRANT SELECT ON palisade.orgs TO palisade_bench_bypass;
SQL

# The server's own transaction for GET /api/v1/orgs/{org} (palisade-store: Tx::tenant + repo::orgs::get).
SELECT_ORG="SELECT tenant_id, name, created_at, updated_at, current_setting('app.role', true) FROM palisade.orgs WHERE tenant_id = :org;"
cat >"$WORK/plain.sql" <<SQL
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
$SELECT_ORG
COMMIT;
SQL
cat >"$WORK/pipelined.sql" <<SQL
\\startpipeline
BEGIN;
SELECT palisade.enter_tenant(:hash, now(), :org);
$SELECT_ORG
COMMIT;
\\endpipeline
SQL
cat >"$WORK/rls.sql" <<SQL
BEGIN;
SELECT set_config('app.tenant_id', :org, true);
SELECT tenant_id, name FROM palisade.orgs WHERE tenant_id = :org;
COMMIT;
SQL

pgb() { # user password file seconds
  PGUSER=$1 PGPASSWORD=$2 pgbench -n -M prepared -c 16 -j 2 -T "$4" -D hash="\\x$TOKEN_HASH" -D org="$ORG_UUID" -f "$3" 2>&1 \
    | awk '/^tps = /{print $3}'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
wrk_run() { wrk -t 2 -c 16 -d "${STEP}s" --latency -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" >"$WORK/wrk.txt"
  awk '/^Requests\/sec:/{rps=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} END {print rps, p50, p99}' "$WORK/wrk.txt"; }

echo "==> warm-up"
wrk -t 2 -c 16 -d 3s -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG" >/dev/null
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$B/api/v1/orgs/$ORG")" = 200 ]
PGUSER=palisade_app PGPASSWORD="$APP_PW" psql -qAtX -v ON_ERROR_STOP=1 -c "BEGIN; SELECT palisade.enter_tenant('\\x$TOKEN_HASH', now(), '$ORG_UUID'); COMMIT;" >/dev/null

declare -a SERVER P50 P99 PLAIN PIPE
for i in $(seq 1 $RUNS); do
  echo "==> run $i/$RUNS: wrk, pgbench plain, pgbench pipelined (${STEP}s each)"
  read -r rps p50 p99 < <(wrk_run); SERVER+=("$rps"); P50+=("$p50"); P99+=("$p99")
  PLAIN+=("$(pgb palisade_app "$APP_PW" "$WORK/plain.sql" "$STEP")")
  PIPE+=("$(pgb palisade_app "$APP_PW" "$WORK/pipelined.sql" "$STEP")")
done
S=$(printf '%s\n' "${SERVER[@]}" | median); PL=$(printf '%s\n' "${PLAIN[@]}" | median); PI=$(printf '%s\n' "${PIPE[@]}" | median)
P50M=$(printf '%s\n' "${P50[@]}" | tail -1); P99M=$(printf '%s\n' "${P99[@]}" | tail -1)

RLS_STEP=$STEP
echo "==> RLS cost: 5 alternating runs of ${RLS_STEP}s, enforced (palisade_app) vs BYPASSRLS"
declare -a RATIOS
for i in 1 2 3 4 5; do
  enforced=$(pgb palisade_app "$APP_PW" "$WORK/rls.sql" "$RLS_STEP")
  bypass=$(pgb palisade_bench_bypass "$APP_PW" "$WORK/rls.sql" "$RLS_STEP")
  RATIOS+=("$(awk -v a="$enforced" -v b="$bypass" 'BEGIN {printf "%.3f", a/b}')")
  echo "    enforced $enforced tx/s, bypass $bypass tx/s"
done
RLS=$(printf '%s\n' "${RATIOS[@]}" | median)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg cores "$(nproc)" --arg mem "$(free -m | awk '/Mem:/{print $2}')" \
  --arg pg "$(pgbench --version | awk '{print $3}')" \
  --argjson s "$S" --argjson pl "$PL" --argjson pi "$PI" --argjson rls "$RLS" --arg p50 "$P50M" --arg p99 "$P99M" '
  def fig(name; value; unit; baseline; target):
    {name: name, value: value, unit: unit, baseline: baseline,
     ratio: (if baseline then ((value / baseline) * 1000 | round / 1000) else null end),
     target: target, pass: (if target then (if baseline then (value / baseline) >= target else value >= target end) else null end)};
  {commit: $commit, machine: {cores: ($cores|tonumber), memory_mib: ($mem|tonumber), postgresql: $pg},
   figures: [
     fig("GET /api/v1/orgs/{org} vs pgbench plain"; $s; "req/s"; $pl; 0.5),
     fig("GET /api/v1/orgs/{org} vs pgbench pipelined"; $s; "req/s"; $pi; 0.25),
     fig("RLS-enforced select vs BYPASSRLS (median ratio of 5)"; $rls; "ratio"; null; 0.95),
     {name: "GET /api/v1/orgs/{org} latency p50 / p99 (last run)", value: null, unit: ($p50 + " / " + $p99), baseline: null, ratio: null, target: null, pass: null}
   ]}' > bench/results/foundation.json
echo
jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' bench/results/foundation.json \
  | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
echo "(written to bench/results/foundation.json)"
