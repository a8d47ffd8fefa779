#!/usr/bin/env bash
# Security scan (issue #6) with independent tools from Debian, against the release server over
# its default HTTPS listener (self-signed certificate):
#   - testssl.sh: no SSLv2/SSLv3/TLS 1.0/TLS 1.1 offered, every offered cipher an AEAD suite;
#   - sqlmap: no injectable parameter in the records list endpoint (filters, sort, limit, cursor).
# Loopback only; writes bench/results/security.json; exits non-zero on any finding.
#   bench/security.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${BENCH_PORT:-18934}
bash scripts/ensure-deps.sh run
for pkg in testssl.sh:testssl sqlmap:sqlmap jq:jq; do
  command -v "${pkg#*:}" >/dev/null || { echo "==> apt-get install ${pkg%%:*}"; apt-get install -y -qq --no-install-recommends "${pkg%%:*}" >/dev/null; }
done

echo "==> building (release)"
cargo build --release --locked -p palisade-server --bin palisade 2>&1 | tail -1
BIN=$PWD/target/release/palisade
WORK=$(mktemp -d /tmp/palisade-sec.XXXXXX)
chmod 711 "$WORK"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; remove_workdir; }
trap cleanup EXIT
source bench/lib.sh
# sqlmap sends thousands of requests: limits off, or it would only ever see 429.
PALISADE_RATE_LIMITS=off start_palisade "$PORT" tls
embedded_pg_env
C="curl -ksf"
PASSWORD="violet-kettle-orbit-93"
$C "$B/api/v1/auth/signup" -H 'content-type: application/json' -d "{\"email\":\"scan@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Scan\"}" >/dev/null
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()"
TOKEN=$($C "$B/api/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"scan@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)
ORG=$($C "$B/api/v1/orgs" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"Scan Org"}' | jq -r .id)
$C "$B/api/v1/orgs/$ORG/collections" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"work_orders","schema":{"type":"object","properties":{"title":{"type":"string"},"hours":{"type":"number"}},"required":["title"]}}' >/dev/null
for t in Roof Gutter Chimney; do
  $C "$B/api/v1/orgs/$ORG/collections/work_orders/records" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"data\":{\"title\":\"$t\",\"hours\":3}}" >/dev/null
done

echo "==> testssl.sh (protocols and every cipher per protocol; a few minutes)"
TLS_URL="localhost:$PORT"
testssl --quiet --color 0 --warnings off --protocols --cipher-per-proto --jsonfile "$WORK/testssl.json" "$TLS_URL" >"$WORK/testssl.txt" 2>&1 || true
[ -s "$WORK/testssl.json" ] || { cat "$WORK/testssl.txt"; echo "testssl produced no results" >&2; exit 1; }
OLD=$(jq -r '[.[] | select(.id == "SSLv2" or .id == "SSLv3" or .id == "TLS1" or .id == "TLS1_1") | select(.finding | test("not offered") | not) | .id] | join(" ")' "$WORK/testssl.json")
OFFERED=$(jq -r '[.[] | select(.id | startswith("cipher-")) | .finding] | length' "$WORK/testssl.json")
NON_AEAD=$(jq -r '[.[] | select(.id | startswith("cipher-")) | .finding | select(test("GCM|CHACHA20|CCM") | not)] | join("; ")' "$WORK/testssl.json")
PROTOCOLS=$(jq -r '[.[] | select(.id == "TLS1_2" or .id == "TLS1_3") | "\(.id): \(.finding)"] | join("; ")' "$WORK/testssl.json")
echo "    old protocols offered: ${OLD:-none}; ciphers offered: $OFFERED; non-AEAD: ${NON_AEAD:-none}"
echo "    $PROTOCOLS"

echo "==> sqlmap against the records list endpoint (level 3, risk 2)"
LIST="$B/api/v1/orgs/$ORG/collections/work_orders/records?filter%5Btitle%5D%5Beq%5D=Roof&sort=title&limit=10"
sqlmap -u "$LIST" --headers="Authorization: Bearer $TOKEN" --batch --level 3 --risk 2 --random-agent \
  --dbms PostgreSQL --flush-session --output-dir "$WORK/sqlmap" --disable-coloring >"$WORK/sqlmap.txt" 2>&1 || true
grep -E "parameter|injectable|identified|tested" "$WORK/sqlmap.txt" | tail -12 | sed 's/^/    /'
INJECTABLE=$(grep -cE "is vulnerable|identified the following injection point" "$WORK/sqlmap.txt" || true)
TESTED=$(grep -c "testing '" "$WORK/sqlmap.txt" || true)
NOT_INJECTABLE=$(grep -cE "does not (seem|appear) to be injectable|do not appear to be injectable" "$WORK/sqlmap.txt" || true)
SERVER_ERRORS=$(grep -c '"level":"ERROR"' "$WORK/server.log" || true)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
jq -n --arg commit "$COMMIT" --arg old "$OLD" --arg non_aead "$NON_AEAD" --arg protocols "$PROTOCOLS" \
  --argjson offered "$OFFERED" --argjson injectable "$INJECTABLE" --argjson tested "$TESTED" \
  --argjson not_injectable "$NOT_INJECTABLE" --argjson errors "$SERVER_ERRORS" \
  --arg testssl "$(testssl --version 2>/dev/null | grep -oE '3\.[0-9.]+' | head -1)" --arg sqlmap "$(sqlmap --version 2>/dev/null | grep -oE '^[0-9][0-9.]*[^ ]*' | head -1)" '
  {commit: $commit, tools: {testssl: $testssl, sqlmap: $sqlmap},
   tls: {old_protocols_offered: $old, ciphers_offered: $offered, non_aead_ciphers: $non_aead, modern: $protocols,
         pass: ($old == "" and $non_aead == "" and $offered > 0)},
   sql_injection: {endpoint: "GET /api/v1/orgs/{org}/collections/{name}/records", payloads_tested: $tested,
                   parameters_not_injectable: $not_injectable, injection_points_found: $injectable, server_500s: $errors,
                   pass: ($injectable == 0 and $tested > 0 and $errors == 0)}}' > bench/results/security.json
jq . bench/results/security.json
jq -e '.tls.pass and .sql_injection.pass' bench/results/security.json >/dev/null || { echo "FINDINGS: see above" >&2; exit 1; }
echo "no findings (written to bench/results/security.json)"
