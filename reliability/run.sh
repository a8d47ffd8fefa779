#!/usr/bin/env bash
# The reliability and attack suite in one command (issue #10; reliability/README.md):
#   reliability/run.sh full    make reliability: every suite at full length (release build),
#                              < 45 min on 2 cores; writes reliability/results/latest.{json,md}
#   reliability/run.sh quick   the fast subset of every suite (debug build), part of the README
#                              test command and so of CI; writes reliability/results/quick.{json,md}
# Each suite (reliability/suites/NAME.sh) starts what it needs — its own server over its own
# embedded PostgreSQL, Redis, load generators — and stops it; this runner bounds each with
# `timeout`, stops whatever a suite left behind, and merges the suites' results.
# Exit code: 0 when every suite ran with no failure; 1 when a suite failed or could not run
# (the results say which and why); 2 when the build or the tools are missing.
set -uo pipefail # no -e: a failing suite is recorded and the run goes on
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
case "$MODE" in
  full) OUT=reliability/results/latest ;;
  quick) OUT=reliability/results/quick ;;
  *) echo "usage: reliability/run.sh quick|full" >&2; exit 2 ;;
esac

# name | time limit in seconds (full/quick) | what it shows
SUITES=(
  "supply_chain|900/600|cargo audit (offline advisory database) and cargo-deny: licenses, bans, sources"
  "cross_tenant|600/300|org B's session and API key against org A's ids on every route of the OpenAPI document"
  "schemathesis|720/300|schemathesis against /api/v1/openapi.json as two users of two orgs, stateful links on"
  "brute_force|300/150|200 concurrent wrong passwords at one account; timing of unknown vs known emails"
  "clock|300/180|the server's clock skewed ±1 h and jumped: token expiry, TOTP, lockout, retention"
  "crash|420/180|kill -9 of the server, then of the postmaster, under write load; amcheck and audit chains after"
  "disk_full|300/150|the data directory on a small tmpfs filled under write load: 503s, no corruption, recovery"
  "fuzz|1500/600|cargo-fuzz targets for every parser of untrusted input (2 min each full, 20 s quick)"
  "load|480/120|80 % of measured capacity, reads + writes + sign-ins: no errors, flat memory"
)
TOTAL=$((${#SUITES[@]} + 1))

RUN_DIR=$PWD/target/reliability/$MODE # logs and per-suite results (target/ is not tracked)
rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR/suites" "$RUN_DIR/logs"
mkdir -p "$(dirname "$OUT")" # results/ holds no tracked file until a full run is committed
: >"$RUN_DIR/steps.jsonl"

# ---- every process a suite starts is stopped, whatever happens (as in bench/run.sh) ----------
STEP_PID=""; TAIL_PID=""
REL_TMP=$(mktemp -d /tmp/palisade-reliability.XXXXXX)
chmod 711 "$REL_TMP" # the embedded cluster runs as another user and must traverse it
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'; }
stop_group() {
  local pgid=$1
  group_alive "$pgid" || return 0
  kill -TERM -- "-$pgid" 2>/dev/null
  for _ in $(seq 1 100); do group_alive "$pgid" || return 0; sleep 0.2; done
  echo "    (killing what is left of process group $pgid)"
  kill -KILL -- "-$pgid" 2>/dev/null
  sleep 0.5
}
on_exit() {
  [ -n "$STEP_PID" ] && stop_group "$STEP_PID"
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  # A suite killed by its time limit may leave its small filesystem mounted (disk_full mounts a
  # tmpfs where the embedded cluster lives: under REL_TMP, or /var/lib/palisade/clusters as root).
  awk -v t="$REL_TMP" '$3 == "tmpfs" && (index($2, t) == 1 || index($2, "/var/lib/palisade/clusters/") == 1) {print $2}' \
    /proc/mounts 2>/dev/null | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$REL_TMP"
}
trap on_exit EXIT
trap 'echo "interrupted: stopping the current suite" >&2; exit 130' INT TERM HUP

# ---- tools and the build -------------------------------------------------------------------
echo "==> reliability/run.sh $MODE: checking tools"
bash scripts/ensure-deps.sh run || { echo "error: PostgreSQL server binaries or the compiler are missing" >&2; exit 2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=0
need() { # command package
  command -v "$1" >/dev/null && return 0
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq || return 1; apt_updated=1; fi
  echo "    apt-get install $2"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
for pair in wrk:wrk jq:jq curl:curl python3:python3 redis-server:redis-server pg_amcheck:postgresql-client-15; do
  need "${pair%%:*}" "${pair#*:}" || { echo "error: could not install ${pair#*:} (needed: ${pair%%:*})" >&2; exit 2; }
done

# Quick mode builds exactly what `cargo test --workspace` builds (a no-op right after the test
# step of `make test`): `cargo build -p palisade-server` alone resolves other crate features and
# rebuilt half the dependency tree (207 s in CI) for the same binary.
if [ "$MODE" = full ]; then
  BUILD_CMD=(cargo build --release --locked -p palisade-server --bin palisade); REL_BIN=$PWD/target/release/palisade
else
  BUILD_CMD=(cargo test --workspace --locked --no-run); REL_BIN=$PWD/target/debug/palisade
fi
echo "[1/$TOTAL] build: ${BUILD_CMD[*]}"
BUILD_START=$(date +%s)
if ! "${BUILD_CMD[@]}" >"$RUN_DIR/logs/build.log" 2>&1; then
  tail -20 "$RUN_DIR/logs/build.log" >&2
  echo "error: the build failed (log: $RUN_DIR/logs/build.log)" >&2
  exit 2
fi
echo "    built in $(( $(date +%s) - BUILD_START ))s"

# ---- the suites ----------------------------------------------------------------------------
export REL_MODE=$MODE REL_BIN REL_OUT=$RUN_DIR/suites REL_TMP
START=$(date +%s)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
n=1
for spec in "${SUITES[@]}"; do
  IFS='|' read -r name limits title <<<"$spec"
  n=$((n + 1))
  limit=${limits%/*}; [ "$MODE" = quick ] && limit=${limits#*/}
  log="$RUN_DIR/logs/$name.log"
  echo "[$n/$TOTAL] $name: $title (at most ${limit}s)"
  t0=$(date +%s)
  timeout --kill-after=20 "$limit" bash "reliability/suites/$name.sh" >"$log" 2>&1 &
  STEP_PID=$!
  # Progress: the suite's "==> …", case and note lines, as they come.
  tail -n +1 -F --pid="$STEP_PID" "$log" 2>/dev/null \
    | awk -v p="[$n/$TOTAL] $name: " '/^==> /{sub(/^==> /, ""); print p $0; fflush(); next}
                                      /^    (ok  |FAIL|note:)/{print "      " substr($0, 5); fflush()}' &
  TAIL_PID=$!
  wait "$STEP_PID"; rc=$?
  stop_group "$STEP_PID"
  wait "$TAIL_PID" 2>/dev/null; TAIL_PID=""; STEP_PID=""
  secs=$(( $(date +%s) - t0 ))
  result="$REL_OUT/$name.json"
  if [ "$rc" != 0 ] || [ ! -s "$result" ]; then
    # The suite broke or ran out of time before writing a result: it did not run, and says why.
    why="the suite script stopped with exit code $rc before writing its result (log: $log)"
    { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && why="the suite did not finish within its ${limit}s limit (log: $log)"
    jq -n --arg name "$name" --arg why "$why" \
      '{name: $name, ran: false, why_not: $why, cases: 0, failures: 0, failed: [], notes: []}' >"$result"
    echo "[$n/$TOTAL] $name: NOT RUN — $why; last lines:"
    tail -5 "$log" | sed 's/^/    | /'
  fi
  jq -c --argjson secs "$secs" --arg log "$log" --arg title "$title" '. + {seconds: $secs, log: $log, title: $title}' \
    "$result" >>"$RUN_DIR/steps.jsonl"
  echo "[$n/$TOTAL] $name: $(jq -r 'if .ran then "\(.cases) cases, \(.failures) failures" else "not run" end' "$result") in ${secs}s"
done
SECONDS_ALL=$(( $(date +%s) - START ))

# ---- results -------------------------------------------------------------------------------
python3 reliability/merge.py --mode "$MODE" --steps "$RUN_DIR/steps.jsonl" --started-at "$STARTED_AT" \
  --seconds "$SECONDS_ALL" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --json "$OUT.json" --md "$OUT.md" || { echo "error: merging the results failed" >&2; exit 1; }
echo
cat "$OUT.md" | sed -n '/^| suite/,/^$/p'
bad=$(jq '[.suites[] | select(.ran == false or .failures > 0)] | length' "$OUT.json")
echo "==> $((TOTAL - 1)) suites in ${SECONDS_ALL}s; results: $OUT.md, $OUT.json (logs: $RUN_DIR/logs)"
if [ "$bad" != 0 ]; then
  echo "error: $bad suite(s) failed or could not run:" >&2
  jq -r '.suites[] | select(.ran == false or .failures > 0)
         | "  \(.name): " + (if .ran then "\(.failures) failures: \(.failed | join("; "))" else "not run: \(.why_not)" end)' \
    "$OUT.json" >&2
  exit 1
fi
exit 0
