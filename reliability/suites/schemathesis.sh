#!/usr/bin/env bash
# Schema fuzzing (issue #10, item 1): schemathesis against /api/v1/openapi.json of a real server
# on the embedded PostgreSQL, as each of two users in two organizations (with a session, then
# with an org API key on the org routes), every check on
# (server errors, status codes, content types, response schemas and headers, positive and
# negative data, authentication, use after free) plus the stateful phase (links inferred from
# Location headers and response fields), plus reliability/schemathesis/hooks.py:
# no_cross_tenant_access (a 2xx naming or showing the other identity's objects fails; a share
# of the cases carries the other identity's real ids in the path).
#
# quick (CI): fixed generation (deterministic mode), 3 examples per operation, ~1 minute.
# full: 100 examples per operation from a noted seed, stateful max 30 steps, 2 minutes per
# identity's session run and 1 minute per API-key run (about 7 minutes in all).
# The schemathesis output and reports stay in target/reliability/schemathesis/<mode>/.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
trap rel_cleanup EXIT
rel_begin schemathesis

ST_VERSION=4.32.5
HERE=$PWD/reliability/schemathesis
VENV=$PWD/target/reliability/venv
ARTIFACTS=$PWD/target/reliability/schemathesis/$REL_MODE
# quick: hypothesis's deterministic mode (the same cases every run: CI must not flake). full:
# random generation from a seed that the report notes (SCH_SEED=N generates the same inputs
# again), so every
# full run explores new inputs.
if [ "$REL_MODE" = full ]; then
  EXAMPLES=100; STEPS=30; SCH_SEED=${SCH_SEED:-$(python3 -c 'import random; print(random.randrange(1, 2**31))')}
  GENERATION=(--seed "$SCH_SEED" --max-time 120)
else
  EXAMPLES=3; STEPS=8; GENERATION=(--generation-deterministic)
fi

# --- tools -------------------------------------------------------------------------------------
need_venv() {
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null && return 0
  [ "$(id -u)" = 0 ] || return 1
  echo "==> apt-get install python3-venv"
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
}
need_schemathesis() {
  [ "$("$VENV/bin/st" --version 2>/dev/null)" = "st, version $ST_VERSION" ] && return 0
  need_venv || return 1
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" || return 1
  echo "==> pip install schemathesis==$ST_VERSION (into $VENV)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION" || return 1
  [ "$("$VENV/bin/st" --version 2>/dev/null)" = "st, version $ST_VERSION" ]
}
if ! need_schemathesis; then
  rel_not_run schemathesis "schemathesis $ST_VERSION could not be installed from PyPI into $VENV"
  exit 0
fi

# --- server and the two identities -------------------------------------------------------------
start_palisade "$(rel_port)"
embedded_pg_env
[ "$REL_MODE" = full ] && rel_note "seed $SCH_SEED (SCH_SEED=$SCH_SEED REL_MODE=full reproduces the generated cases)"
rel_note "checks: all of schemathesis $ST_VERSION's (not_a_server_error, status_code/content_type/response_headers/response_schema conformance, positive/negative data, missing_required_header, unsupported_method, allow_header, ignored_auth, use_after_free, ensure_resource_availability) + no_cross_tenant_access (hooks.py); phases examples, coverage, fuzzing, stateful"
rel_note "rate limits off (PALISADE_RATE_LIMITS=off, as in bench/lib.sh); 429 and the other middleware problems are declared on every operation of the document"

SCH_SCHEMA='{"type":"object","properties":{"title":{"type":"string","maxLength":200},"status":{"type":"string","enum":["open","done"]},"hours":{"type":"number"}},"required":["title","status"]}'
# sch_identity TAG EMAIL: a verified user, an org with a collection (JSON Schema), a record, an
# API key, a secret, a custom role and an invitation; prints the identity's JSON for hooks.py.
sch_identity() {
  local tag=$1 email=$2 token org orgname col rec key secret role inv user sessions
  token=$(rel_user "$email") || return 1
  orgname="${tag^} Schema Org"
  org=$(rel_api POST /api/v1/orgs "$token" "{\"name\":\"$orgname\"}" | jq -er .id) || return 1
  col="${tag}_orders"
  rel_api POST "/api/v1/orgs/$org/collections" "$token" "{\"name\":\"$col\",\"schema\":$SCH_SCHEMA}" >/dev/null || return 1
  rec=$(rel_api POST "/api/v1/orgs/$org/collections/$col/records" "$token" \
    "{\"data\":{\"title\":\"$tag record\",\"status\":\"open\"}}" | jq -er .id) || return 1
  key=$(rel_api POST "/api/v1/orgs/$org/api-keys" "$token" \
    "{\"name\":\"$tag key\",\"permissions\":[\"records.read_all\"]}" | jq -er .id) || return 1
  secret="${tag}_secret"
  rel_api POST "/api/v1/orgs/$org/secrets" "$token" "{\"name\":\"$secret\",\"value\":\"$tag-value\"}" >/dev/null || return 1
  role=$(rel_api POST "/api/v1/orgs/$org/roles" "$token" "{\"name\":\"${tag}_role\",\"permissions\":[\"org.read\"]}" |
    jq -er .id) || return 1
  inv=$(rel_api POST "/api/v1/orgs/$org/invitations" "$token" \
    "{\"email\":\"$tag-invitee@example.com\",\"role\":\"member\"}" | jq -er .id) || return 1
  user=$(rel_api GET /api/v1/me "$token" | jq -er .id) || return 1
  sessions=$(rel_api GET /api/v1/me/sessions "$token" | jq -c '[.items[].id]') || return 1
  jq -n --arg email "$email" --arg pw "$REL_PASSWORD" --arg org "$org" --arg orgname "$orgname" --arg col "$col" \
    --arg rec "$rec" --arg key "$key" --arg secret "$secret" --arg role "$role" --arg inv "$inv" --arg user "$user" \
    --argjson sessions "$sessions" --arg tag "$tag" '
    {email: $email, password: $pw, org: $org, collection: $col, record: $rec, api_key: $key, secret: $secret,
     role: $role, invitation: $inv, user: $user, sessions: $sessions,
     markers: ([$email, $org, $orgname, $col, $rec, $key, $secret, $role, $inv, $user, "\($tag)_role",
                "\($tag) key", "\($tag)-invitee@example.com", "\($tag) record"] + $sessions)}'
}
ALPHA=$(sch_identity alpha rel-sch-alpha@example.com) && BRAVO=$(sch_identity bravo rel-sch-bravo@example.com)
rel_check "two identities set up (user, org, collection, record, API key, secret, role, invitation each)" \
  test -n "${ALPHA:-}" -a -n "${BRAVO:-}"
if [ -z "${ALPHA:-}" ] || [ -z "${BRAVO:-}" ]; then tail -20 "$WORK/server.log"; rel_result; exit 0; fi
jq -n --arg b "$B" --argjson a "$ALPHA" --argjson z "$BRAVO" '{base_url: $b, alpha: $a, bravo: $z}' >"$WORK/identities.json"

# --- the runs ----------------------------------------------------------------------------------
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
sed "s/^max-steps = .*/max-steps = $STEPS/" "$HERE/schemathesis.toml" >"$WORK/schemathesis.toml"
# st_run NAME IDENTITIES IDENTITY ARGS…: one schemathesis run, output in $ARTIFACTS/NAME.log and
# reports in $ARTIFACTS/NAME/.
st_run() {
  local name=$1 identities=$2 identity=$3 out="$ARTIFACTS/$1"
  shift 3
  SCH_IDENTITIES="$identities" SCH_IDENTITY=$identity SCH_STATS="$out.stats.json" SCHEMATHESIS_HOOKS="$HERE/hooks.py" \
    timeout 420 "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" --no-color run "$B/api/v1/openapi.json" \
    --report junit,json --report-dir "$out" \
    --report-junit-path "$out/junit.xml" --report-json-path "$out/report.json" "$@" >"$out.log" 2>&1
}

# Canary: with the caller's own objects posing as the other identity's, no_cross_tenant_access
# must fail (so the check is on and can fail at all).
jq '.bravo = .alpha' "$WORK/identities.json" >"$WORK/canary.json"
st_run canary "$WORK/canary.json" alpha --generation-deterministic --max-examples 2 --phases examples,fuzzing \
  --include-path '/api/v1/orgs/{org}' --include-method GET
rel_check "canary: no_cross_tenant_access fails when the 'other' org is the caller's own" \
  bash -c "grep -q 'contains bravo' '$ARTIFACTS/canary.log' || grep -q \"got 200 for bravo\" '$ARTIFACTS/canary.log'"
# Each identity with its session (every operation), then with an org API key (the org routes,
# the only ones an API key opens; quick mode keeps one of the two API-key runs for time).
RUNS=(alpha:session bravo:session bravo:api_key)
[ "$REL_MODE" = full ] && RUNS=(alpha:session bravo:session alpha:api_key bravo:api_key)
for run in "${RUNS[@]}"; do
  who=${run%%:*} auth=${run#*:}
  name=$who
  scope=()
  budget=("${GENERATION[@]}")
  if [ "$auth" = api_key ]; then
    name="$who-api-key"
    scope=(--include-path-regex '^/api/v1/orgs/')
    [ "$REL_MODE" = full ] && budget=(--seed "$SCH_SEED" --max-time 60)
  fi
  out="$ARTIFACTS/$name"
  echo "==> schemathesis as $who with its $auth (max $EXAMPLES examples per operation, stateful max $STEPS steps)"
  started=$(date +%s)
  SCH_AUTH=$auth st_run "$name" "$WORK/identities.json" "$who" --max-examples "$EXAMPLES" "${budget[@]}" "${scope[@]}"
  rc=$?
  echo "    schemathesis exit $rc in $(($(date +%s) - started)) s; output in $out.log"
  if [ ! -s "$out/report.json" ]; then
    tail -30 "$out.log"
    rel_case fail "schemathesis as $who ($auth) produced no report (exit $rc; see $out.log)"
    continue
  fi
  read -r cases failures errors < <(jq -r '[.test_cases.generated, .test_cases.unique_failures, (.errors | length)] | @tsv' \
    "$out/report.json")
  rel_cases "$cases" "$((failures + errors))" "schemathesis as $who ($auth): 0 server errors, schema-conformant answers, no access to the other org's objects"
  rel_note "$name: $cases cases, $(jq -r '"\(.operations.tested)/\(.operations.selected) operations, phases: " + (.phases | to_entries | map("\(.key) \(.value.status)") | join(", ")) + ", re-authenticated \(.auth.reauth_count // 0) times"' "$out/report.json"), $(jq -r .foreign_cases "$out.stats.json" 2>/dev/null || echo '?') cases sent with the other org's ids in the path"
  while IFS= read -r line; do rel_note "$name: $line"; done < <(jq -r '
    (.failures[] | "\(.code) \(.title): \(.count) on \(.operations | join("; "))"),
    (.errors[]? | "error: \(. | tostring | .[:300])")' "$out/report.json")
  [ "$failures" = 0 ] && [ "$errors" = 0 ] || sed -n '/^=* FAILURES =*$/,/^=* SUMMARY =*$/p' "$out.log" | head -60
done

rel_check "the server logged no panic" bash -c "! grep -qi panick '$WORK/server.log'"
cp "$WORK/server.log" "$ARTIFACTS/server.log"
rel_result
