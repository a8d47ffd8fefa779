#!/usr/bin/env bash
# The benchmark suite in one command (make bench = full, make bench-quick = quick):
# checks the tools, builds the release binaries once, runs every area script in sequence — each
# starts its own server over its own embedded PostgreSQL and drives load over loopback with wrk
# and pgbench — then merges their results into bench/results/latest.json + latest.md (full) or
# bench/results/quick.json + quick.md (quick).
#   bench/run.sh full    every step 3 times (medians), 5 s steps, full data sets; < 15 min on 2 cores
#   bench/run.sh quick   every step once, 2 s steps, small data sets; < 3 min
# Exit code: 0 when the suite ran (a figure that misses its target, or an area that failed, shows
# in the results, not here); 1 when no area could run; 2 when the tools or the build are missing.
# bench/security.sh is a scan, not a benchmark: it is not part of the suite.
set -uo pipefail # no -e: a failing step is recorded and the suite goes on
cd "$(dirname "$0")/.."

# The suites start private servers over private clusters: a PALISADE_* setting inherited from the
# caller's shell (a PALISADE_DATABASE_URL above all) must never reach them, and an unknown one
# would stop every server at start (the configuration refuses unknown PALISADE_ variables).
for var in $(compgen -e | grep '^PALISADE_' || true); do
  [ "$var" = PALISADE_RATE_LIMITS ] && continue # the one knob the scripts honour
  echo "note: ignoring $var from the environment (the suites configure their own servers)" >&2
  unset "$var"
done
MODE=${1:-}

# ---- what each mode runs -----------------------------------------------------------------
# The durations are chosen to fit the budgets on a 2-core machine; every load step inside the
# scripts is bounded (wrk -d, pgbench -T), and each script as a whole by `timeout` below.
case "$MODE" in
  full)
    STEP=5; RUNS=3; WARMUP=3; EVENTS=1000000; SEALED_RECORDS=20000; REFRESH_ROWS=1000000; SCALE_SIZES="1000 100000 1000000"
    BUDGET=900 # seconds for all steps together (the build is not counted)
    SUMMARY="every step run 3 times (medians reported) for 5 s after a 3 s warm-up; 1M audit events, 20k sealed records, 1M refresh tokens, 100k tenants, 1k/100k/1M records in one org."
    OUT=bench/results/latest ;;
  quick)
    STEP=2; RUNS=1; WARMUP=1; EVENTS=50000; SEALED_RECORDS=2000; REFRESH_ROWS=100000; SCALE_SIZES="1000 10000"
    BUDGET=175
    SUMMARY="every step run once (no median) for 2 s after a 1 s warm-up; 50k audit events (the 10 s verification target needs 1M: reported only), 2k sealed records, 100k refresh tokens, 100k tenants, 1k/10k records in one org (the 1M figure needs full mode)."
    OUT=bench/results/quick ;;
  *) echo "usage: bench/run.sh quick|full" >&2; exit 2 ;;
esac
TENANTS=100000

# area | arguments | time limit (s, per mode: full/quick) | what it measures
STEPS=(
  "foundation|$STEP|150/45|GET /orgs/{org} vs pgbench, RLS cost, server memory"
  "records|$STEP $EVENTS|540/60|record creates, single GET, list of 50, chain verification, export"
  "auth|$STEP|180/45|sign-ins vs argon2id, reads during a sign-in flood, token rotations"
  "edge|$STEP|180/45|rate limits in process and through Redis, HTTPS"
  "encryption|$STEP $SEALED_RECORDS|150/45|sensitive reads, data-key rotation"
  "scale|$STEP $SCALE_SIZES|240/45|cost growth with 1k/100k/1M records in an org, 1 → 2 server nodes"
)
TOTAL=$((${#STEPS[@]} + 1))

RUN_DIR=$PWD/target/bench/$MODE # logs and per-area results of this run (target/ is not tracked)
rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR/areas" "$RUN_DIR/logs"
: >"$RUN_DIR/steps.jsonl"

# ---- every process this suite starts is stopped, whatever happens ---------------------------
# Each area script runs under `timeout`, which puts it in a process group of its own (group id =
# the timeout's pid): its server, the embedded PostgreSQL, redis-server, wrk and pgbench all live
# in that group, so the group is what gets stopped — TERM first (the script's own trap shuts its
# server down cleanly), KILL for whatever is left. Work directories live under BENCH_TMP, which
# is removed at the end.
STEP_PID=""; TAIL_PID=""
BENCH_TMP=$(mktemp -d /tmp/palisade-bench-run.XXXXXX)
chmod 711 "$BENCH_TMP" # the embedded cluster runs as another user and must traverse it
# group_alive PGID: a live (not zombie) process is still in the group. PostgreSQL's backends put
# themselves in groups of their own, but they exit with their postmaster, which stays in ours.
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'; }
stop_group() { # PGID: stop every process of the group
  local pgid=$1 i
  group_alive "$pgid" || return 0
  kill -TERM -- "-$pgid" 2>/dev/null
  for i in $(seq 1 100); do group_alive "$pgid" || return 0; sleep 0.2; done
  echo "    (killing what is left of process group $pgid)"
  kill -KILL -- "-$pgid" 2>/dev/null
  sleep 0.5
}
on_exit() {
  [ -n "$STEP_PID" ] && stop_group "$STEP_PID"
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  rm -rf "$BENCH_TMP"
}
trap on_exit EXIT
trap 'echo "interrupted: stopping the current step" >&2; exit 130' INT TERM HUP

# ---- tools ---------------------------------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=0
need() { # command package
  command -v "$1" >/dev/null && return 0
  if [ "$apt_updated" = 0 ]; then echo "    apt-get update"; as_root apt-get update -qq || return 1; apt_updated=1; fi
  echo "    apt-get install $2"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
echo "==> bench/run.sh $MODE: checking tools"
bash scripts/ensure-deps.sh run || { echo "error: PostgreSQL server binaries or the compiler are missing" >&2; exit 2; }
for pair in wrk:wrk pgbench:postgresql-15 jq:jq redis-server:redis-server curl:curl column:bsdextrautils python3:python3; do
  need "${pair%%:*}" "${pair#*:}" || { echo "error: could not install ${pair#*:} (needed: ${pair%%:*})" >&2; exit 2; }
done

# ---- build once ----------------------------------------------------------------------------
echo "[1/$TOTAL] build: cargo build --release --locked -p palisade-server (+ the hash_rate example)"
BUILD_START=$(date +%s)
if ! cargo build --release --locked -p palisade-server --bin palisade -p palisade-auth --example hash_rate \
    >"$RUN_DIR/logs/build.log" 2>&1; then
  tail -20 "$RUN_DIR/logs/build.log" >&2
  echo "error: the release build failed (log: $RUN_DIR/logs/build.log)" >&2
  exit 2
fi
BUILD_S=$(( $(date +%s) - BUILD_START ))
echo "    built in ${BUILD_S}s"

# ---- the steps -----------------------------------------------------------------------------
export BENCH_RUNS=$RUNS BENCH_WARMUP=$WARMUP BENCH_TENANTS=$TENANTS BENCH_REFRESH_ROWS=$REFRESH_ROWS
export BENCH_OUT=$RUN_DIR/areas BENCH_TMP BENCH_PREPARED=1
START=$(date +%s)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
n=1; ok=0
for spec in "${STEPS[@]}"; do
  IFS='|' read -r area args limits title <<<"$spec"
  n=$((n + 1))
  limit=${limits%/*}; [ "$MODE" = quick ] && limit=${limits#*/}
  left=$(( BUDGET - ($(date +%s) - START) ))
  [ "$left" -lt "$limit" ] && limit=$left
  log="$RUN_DIR/logs/$area.log"
  if [ "$limit" -lt 15 ]; then
    echo "[$n/$TOTAL] $area: skipped — the suite's ${BUDGET}s budget is spent"
    status=skipped; rc=""; secs=0
  else
    echo "[$n/$TOTAL] $area: $title (at most ${limit}s)"
    t0=$(date +%s)
    # shellcheck disable=SC2086 # the arguments are words on purpose
    timeout --kill-after=20 "$limit" bash "bench/$area.sh" $args >"$log" 2>&1 &
    STEP_PID=$!
    # Progress: the script's "==> …" lines, as they come, under the step's number.
    tail -n +1 -F --pid="$STEP_PID" "$log" 2>/dev/null \
      | awk -v p="[$n/$TOTAL] $area: " '/^==> /{sub(/^==> /, ""); print p $0; fflush()}' &
    TAIL_PID=$!
    wait "$STEP_PID"; rc=$?
    stop_group "$STEP_PID" # anything the script left behind (it should have stopped everything)
    wait "$TAIL_PID" 2>/dev/null; TAIL_PID=""; STEP_PID=""
    secs=$(( $(date +%s) - t0 ))
    if [ "$rc" = 0 ] && [ -s "$BENCH_OUT/$area.json" ]; then status=ok; ok=$((ok + 1))
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout
    else status=failed; fi
    if [ "$status" = ok ]; then
      echo "[$n/$TOTAL] $area: done in ${secs}s"
    else
      echo "[$n/$TOTAL] $area: $status (exit $rc) after ${secs}s — last lines of $log:"
      tail -5 "$log" | sed 's/^/    | /'
    fi
  fi
  jq -cn --arg area "$area" --arg title "$title" --arg status "$status" --arg rc "$rc" --arg secs "$secs" --arg log "$log" \
    '{area: $area, title: $title, status: $status, exit_code: (if $rc == "" then null else ($rc | tonumber) end),
      seconds: ($secs | tonumber), log: $log}' >>"$RUN_DIR/steps.jsonl"
done
SECONDS_ALL=$(( $(date +%s) - START ))

# ---- results -------------------------------------------------------------------------------
jq -n --arg started "$STARTED_AT" --argjson epoch "$START" --argjson secs "$SECONDS_ALL" --argjson build "$BUILD_S" \
  --arg load "$LOAD" --arg summary "$SUMMARY" --argjson step "$STEP" --argjson runs "$RUNS" --argjson warmup "$WARMUP" \
  --argjson events "$EVENTS" --argjson sealed "$SEALED_RECORDS" --argjson refresh "$REFRESH_ROWS" --argjson tenants "$TENANTS" \
  '{started_at: $started, started_epoch: $epoch, seconds: $secs, build_seconds: $build, load_average_at_start: $load,
    settings: {summary: $summary, seconds_per_step: $step, runs: $runs, warmup_seconds: $warmup, audit_events: $events,
               sealed_records: $sealed, refresh_tokens: $refresh, tenants: $tenants}}' >"$RUN_DIR/run.json"
python3 bench/merge.py --mode "$MODE" --run-dir "$RUN_DIR" --json "$OUT.json" --md "$OUT.md" \
  || { echo "error: merging the results failed" >&2; exit 1; }
# A full run also refreshes the per-area files of record (what each script writes when run alone).
if [ "$MODE" = full ]; then
  for f in "$BENCH_OUT"/*.json; do [ -e "$f" ] && cp "$f" bench/results/; done
fi
echo "==> $ok of $((TOTAL - 1)) areas ran in ${SECONDS_ALL}s (build ${BUILD_S}s); results: $OUT.md, $OUT.json (logs: $RUN_DIR/logs)"
[ "$ok" -gt 0 ] || { echo "error: no area could run" >&2; exit 1; }
exit 0
