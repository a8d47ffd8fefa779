#!/usr/bin/env bash
# The whole test command: everything CI checks. `make test` and `.ci/run` both run this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh test

step() { echo; echo "==> $*"; }
started=$SECONDS

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit + integration against real PostgreSQL and HTTP)"
# cargo test, not nextest: each integration-test binary starts one embedded PostgreSQL and clones
# a fresh database per test from a migrated template; nextest's process-per-test would start a
# cluster per test.
cargo test --workspace --locked

step "cargo audit (offline advisory database)"
advisory_db="${PALISADE_ADVISORY_DB:-../shared/advisory-db}"
if [ ! -d "$advisory_db" ]; then echo "error: advisory database not found at $advisory_db (set PALISADE_ADVISORY_DB)" >&2; exit 1; fi
cargo audit --no-fetch --db "$advisory_db" --file Cargo.lock

echo; echo "All checks passed in $((SECONDS - started))s."
