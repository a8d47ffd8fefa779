# Steps every reliability suite shares (sourced, not run). See reliability/README.md.
#
# The contract between reliability/run.sh and a suite script (reliability/suites/NAME.sh):
#   run from the repository root as `bash reliability/suites/NAME.sh`, with
#     REL_MODE  quick (the CI subset) or full (make reliability)
#     REL_BIN   the palisade binary to test (debug build in quick mode, release in full mode)
#     REL_OUT   the directory where the suite writes NAME.json (rel_result does it)
#     REL_TMP   the parent of the suite's scratch directories (removed by run.sh at the end)
#   and it writes $REL_OUT/NAME.json in the shape
#     {"name", "ran": true|false, "why_not", "cases", "failures", "failed": [..], "notes": [..]}
#   A suite exits 0 once it has written its result (failures are in the result, not the exit
#   code); anything else means the harness itself broke and run.sh records the suite as not run.
#   Every process a suite starts must stop when the suite ends (trap rel_cleanup EXIT).
# A suite also runs alone: `REL_MODE=quick bash reliability/suites/NAME.sh` builds the debug
# binary itself and writes into target/reliability/alone/.

set -uo pipefail
REL_MODE=${REL_MODE:-quick}
REL_OUT=${REL_OUT:-$PWD/target/reliability/alone}
REL_TMP=${REL_TMP:-/tmp}
if [ -z "${REL_BIN:-}" ]; then
  echo "==> building the debug binary (cargo build -p palisade-server --bin palisade)"
  cargo build -q --locked -p palisade-server --bin palisade || exit 2
  REL_BIN=$PWD/target/debug/palisade
fi
mkdir -p "$REL_OUT"

# bench/lib.sh gives start_palisade PORT [tls], embedded_pg_env, psql_admin, wrk_stats, rss_mib;
# they use $BIN and $WORK.
# shellcheck source=../bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../bench/lib.sh"
BIN=$REL_BIN

REL_NAME=""
REL_NOTES=()
SERVER_PID=""
REL_PIDS=()

# rel_begin NAME: the suite's name and a private scratch directory $WORK that the embedded
# cluster's user can traverse.
rel_begin() {
  REL_NAME=$1
  WORK=$(mktemp -d "$REL_TMP/palisade-rel-$1.XXXXXX")
  chmod 711 "$WORK"
  : >"$WORK/cases.jsonl"
  echo "==> $REL_NAME ($REL_MODE): scratch $WORK"
}

# rel_cleanup: stops the server and every background process the suite registered with
# rel_track PID, then removes the scratch directory. Use as `trap rel_cleanup EXIT`.
rel_track() { REL_PIDS+=("$1"); }
rel_cleanup() {
  local pid
  for pid in "${REL_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  remove_workdir
}

# rel_case ok|fail DESCRIPTION: one case of the suite, printed as it happens.
rel_case() {
  local verdict=$1; shift
  jq -cn --arg v "$verdict" --arg d "$*" '{ok: ($v == "ok"), what: $d}' >>"$WORK/cases.jsonl"
  if [ "$verdict" = ok ]; then echo "    ok   $*"; else echo "    FAIL $*"; fi
}

# rel_check DESCRIPTION COMMAND...: a case that passes when the command succeeds.
rel_check() {
  local what=$1; shift
  if "$@"; then rel_case ok "$what"; else rel_case fail "$what"; fi
}

# rel_cases N FAILURES DESCRIPTION: many cases at once (a tool that counts its own, say).
rel_cases() {
  jq -cn --argjson n "$1" --argjson f "$2" --arg d "$3" '{ok: ($f == 0), what: $d, count: $n, failures: $f}' \
    >>"$WORK/cases.jsonl"
  echo "    $([ "$2" = 0 ] && echo "ok  " || echo FAIL) $3 ($1 cases, $2 failures)"
}

# rel_note TEXT: a line for the report (a measured figure, what was skipped and why).
rel_note() { REL_NOTES+=("$*"); echo "    note: $*"; }

# rel_result: writes $REL_OUT/$REL_NAME.json from the cases so far.
rel_result() {
  local notes
  notes=$(printf '%s\n' "${REL_NOTES[@]+"${REL_NOTES[@]}"}" | jq -R . | jq -s 'map(select(. != ""))')
  jq -s --arg name "$REL_NAME" --argjson notes "$notes" '
    {name: $name, ran: true, why_not: null,
     cases: (map(.count // 1) | add // 0),
     failures: (map(if has("count") then .failures else (if .ok then 0 else 1 end) end) | add // 0),
     failed: (map(select(.ok | not) | .what) | .[:50]),
     notes: $notes}' "$WORK/cases.jsonl" >"$REL_OUT/$REL_NAME.json"
  jq -r '"==> \(.name): \(.cases) cases, \(.failures) failures"' "$REL_OUT/$REL_NAME.json"
}

# rel_not_run NAME WHY: the suite could not run here; it says so and never passes silently.
rel_not_run() {
  jq -n --arg name "$1" --arg why "$2" '{name: $name, ran: false, why_not: $why, cases: 0, failures: 0, failed: [], notes: []}' \
    >"$REL_OUT/$1.json"
  echo "==> $1: not run: $2"
}

# rel_port: a free loopback TCP port.
rel_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# rel_user EMAIL [PASSWORD]: signs up, marks the address verified (as the instance admin would
# after the mail link), signs in; prints the access token. Needs $B and embedded_pg_env.
REL_PASSWORD="violet-kettle-orbit-93"
rel_user() {
  local email=$1 pw=${2:-$REL_PASSWORD}
  curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' \
    -d "$(jq -cn --arg e "$email" --arg p "$pw" '{email: $e, password: $p, name: "Reliability"}')" >/dev/null || return 1
  psql_admin -c "UPDATE palisade.users SET email_verified_at = now() WHERE email = '$email'" >/dev/null || return 1
  curl -sf "$B/api/v1/auth/login" -H 'content-type: application/json' \
    -d "$(jq -cn --arg e "$email" --arg p "$pw" '{email: $e, password: $p}')" | jq -er .access_token
}

# rel_api METHOD PATH TOKEN [JSON]: a JSON API call; prints the body, fails on non-2xx.
rel_api() {
  local args=(-sS -f -X "$1" "$B$2" -H "authorization: Bearer $3")
  [ $# -ge 4 ] && args+=(-H 'content-type: application/json' -d "$4")
  curl "${args[@]}"
}
