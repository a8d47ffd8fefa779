#!/usr/bin/env bash
# The whole test command: everything CI checks. `make test` and `.ci/run` both run this.
# fmt, clippy, cargo test (unit + integration), cargo audit, the fast reliability subset.
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
advisory_db="${ADVISORY_DB:-../shared/advisory-db}"
if [ ! -d "$advisory_db" ]; then echo "error: advisory database not found at $advisory_db (set ADVISORY_DB)" >&2; exit 1; fi
cargo audit --no-fetch --db "$advisory_db" --file Cargo.lock

step "reliability: the fast subset of every suite (reliability/run.sh quick)"
# Schemathesis, the cross-tenant probe of every route, crash, disk full, clock faults, brute
# force, 20 s of each fuzz target, cargo-deny, held load: each briefly. Fails when a suite fails
# or cannot run. `make reliability` runs them at full length.
ADVISORY_DB="$advisory_db" bash reliability/run.sh quick

echo; echo "All checks passed in $((SECONDS - started))s."
