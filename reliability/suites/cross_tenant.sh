# Cross-tenant probe of every route (issue #10, item 2). The probe itself is the integration
# test crates/palisade-server/tests/api/cross_tenant/ (the real server and router over a fresh
# database of the embedded cluster, through palisade-testkit): org A holds one of every object
# the API addresses by id; org B's owner, as a session (bearer access token) and as an API key
# with every permission, calls every path × method of /api/v1/openapi.json with A's real ids and
# valid bodies. Tenant-bound routes must answer exactly 404 not-found, the others what the
# test's table says (401/403 for admin routes and API keys off organization routes, B's own data
# on account routes); no answer may contain A's ids or names; undocumented methods answer 405;
# a snapshot of every row of A's (tenant tables, A's users in the instance tables) is equal
# before and after; controls show A's ids are real (A's owner reads them) and B's credentials
# work on B's own org. A route of the document without a table entry fails the test.
#
# This script runs that test with PALISADE_RELIABILITY_REPORT set and turns its report
# {"cases", "failures", "failed"} into cases here. Quick and full mode run the same probe (a few
# seconds once the test binary is built; it is a cargo test, so it uses the debug build of the
# test harness in both modes, not $REL_BIN). No report (compile failure, a panic while setting
# up) is a failing case, never a pass.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
rel_begin cross_tenant
trap rel_cleanup EXIT

REPORT="$WORK/report.json"
LOG="$WORK/cargo-test.log"
started=$(date +%s)
echo "==> cargo test -p palisade-server --test api cross_tenant:: (report: $REPORT)"
PALISADE_RELIABILITY_REPORT="$REPORT" \
  cargo test -q --locked -p palisade-server --test api cross_tenant:: -- --test-threads=1 >"$LOG" 2>&1
rc=$?
rel_note "cargo test exited $rc after $(($(date +%s) - started)) s"

if [ -s "$REPORT" ] && jq -e '(.cases | type == "number") and (.failures | type == "number") and (.failed | type == "array")' \
  "$REPORT" >/dev/null 2>&1; then
  cases=$(jq -r .cases "$REPORT")
  failures=$(jq -r .failures "$REPORT")
  rel_cases "$((cases - failures))" 0 "route × method × credential probes, 405 probes, controls and the snapshot of org A"
  while IFS= read -r what; do
    rel_case fail "$what"
  done < <(jq -r '.failed[]' "$REPORT")
  if [ "$rc" != 0 ] && [ "$failures" = 0 ]; then
    # The probe passed but the test run did not (another test matching the filter, or a panic
    # after the report was written).
    rel_case fail "cargo test exited $rc although the probe reported no failure: see the log tail"
    tail -n 40 "$LOG"
  fi
else
  rel_case fail "the cross-tenant probe wrote no report (cargo test exited $rc: compile failure or a panic while setting up)"
  tail -n 60 "$LOG"
fi
rel_result
