#!/usr/bin/env bash
# Builds and starts Palisade with the embedded PostgreSQL: `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh run
cargo build --locked -p palisade-server --bin palisade
exec ./target/debug/palisade serve "$@"
