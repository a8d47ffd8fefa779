# Steps every benchmark script shares (sourced, not run). The server steps need $BIN and $WORK.

# start_palisade PORT [tls]: the release server on loopback over its own embedded cluster in
# $WORK/data. Sets SERVER_PID and B (the base URL). Plain HTTP unless the second argument is
# `tls` (then its self-signed certificate; curl/wrk do not verify it). Rate limits are off
# unless PALISADE_RATE_LIMITS says otherwise (these scripts measure the work, not the
# throttle); access tokens live 60 minutes so a long run never sees one expire. It runs in a
# session of its own (setsid), as a service manager starts it, so its CPU scheduling group is its
# own (see govern_scheduling_group in crates/palisade-server/src/serve.rs).
start_palisade() {
  local scheme=http flag=--insecure-http
  if [ "${2:-}" = tls ]; then scheme=https; flag=; fi
  echo "==> starting palisade (embedded PostgreSQL) on $scheme://127.0.0.1:$1"
  PALISADE_DATA_DIR="$WORK/data" PALISADE_LOG_LEVEL=warn PALISADE_RATE_LIMITS="${PALISADE_RATE_LIMITS:-off}" \
    PALISADE_ACCESS_TOKEN_MINUTES=60 setsid "$BIN" serve --listen "127.0.0.1:$1" $flag >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  B="$scheme://127.0.0.1:$1"
  for _ in $(seq 1 600); do curl -ksf "$B/readyz" >/dev/null && break; sleep 0.1; done
  curl -ksf "$B/readyz" >/dev/null || { cat "$WORK/server.log"; echo "server did not start" >&2; exit 1; }
}

# embedded_pg_env: libpq settings for the embedded cluster's socket; ADMIN_PW and APP_PW.
embedded_pg_env() {
  local secrets="$WORK/data/embedded-pg" cluster
  cluster=$(cat "$secrets/cluster-location" 2>/dev/null || echo "$WORK/data/pg")
  export PGHOST="$cluster/sock" PGPORT=5432 PGDATABASE=palisade
  [ -S "$PGHOST/.s.PGSQL.5432" ] || PGHOST=$(dirname "$(ls /tmp/palisade-*/.s.PGSQL.5432 | head -1)")
  ADMIN_PW=$(cat "$secrets/admin.password"); APP_PW=$(cat "$secrets/runtime.password")
  KEYS_PW=$(cat "$secrets/keys.password"); SIGNIN_PW=$(cat "$secrets/signin.password")
}

# The proof the server hands the database for a bearer access token of session `s` (0037): the
# session's id and its HMAC under the bearer key (the pgbench baselines send the same).
BEARER_PROOF="uuid_send(s.id) || palisade.hmac(uuid_send(s.id), (SELECT key FROM palisade.bearer_key WHERE retire_after IS NULL), 'sha256')"

psql_admin() { PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

# Before each measured step of a with/without pair: the audit sequencer has sealed what the
# steps before wrote, so no step pays for another's sealing. Waits at most 60 s.
settle_db() {
  local i
  for i in $(seq 1 600); do
    [ "$(psql_admin -c "SELECT NOT EXISTS (SELECT 1 FROM palisade.audit_events a
        WHERE a.xid >= (SELECT low_xid FROM palisade.audit_sealer)
        AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = a.id))")" = t ] && break
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------
# Shared by every script since the one-command suite (bench/run.sh). Each script still runs alone
# with its own defaults; the suite only sets these environment variables:
#   BENCH_RUNS      repetitions of each measured step (medians are reported; the suite: 3 in
#                   full mode, 1 in quick mode)
#   BENCH_WARMUP    seconds of warm-up load before a measured step (the suite: 3 full, 1 quick)
#   BENCH_OUT       where <area>.json goes (default bench/results; the suite writes into its own
#                   run directory so a quick run never overwrites the figures of record)
#   BENCH_TMP       parent of the scripts' work directories (the suite removes it at the end, so
#                   nothing is left behind even when a step had to be killed)
#   BENCH_PREPARED  1 = the suite already checked the tools and built the release binaries once

# bench_prepare CARGO-ARGS…: tools and the release build, unless the suite did it already.
bench_prepare() {
  [ "${BENCH_PREPARED:-}" = 1 ] && return 0
  bash scripts/ensure-deps.sh run
  local tool
  for tool in wrk jq; do
    command -v "$tool" >/dev/null || { echo "==> apt-get install $tool"; apt-get install -y -qq "$tool" >/dev/null; }
  done
  echo "==> building (release)"
  cargo build --release --locked "$@" 2>&1 | tail -1
}

# bench_workdir NAME: a private work directory the embedded cluster's user can traverse (711).
bench_workdir() {
  local dir
  dir=$(mktemp -d "${BENCH_TMP:-/tmp}/palisade-bench-$1.XXXXXX")
  chmod 711 "$dir"
  echo "$dir"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# runs_note: how a median figure was made, for the figure's note.
runs_note() { # [runs] [seconds]
  local runs=${1:-$RUNS} secs=${2:-$STEP}
  if [ "$runs" = 1 ]; then echo "1 run of ${secs} s (no median)"; else echo "median of $runs runs of ${secs} s"; fi
}

# wrk_stats FILE: "req/s p50_ms p99_ms" from the output of `wrk --latency` (its latency
# distribution prints us, ms, s or m); fails when a figure is missing.
wrk_stats() {
  awk 'function ms(v) {
         if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
         if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
         if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
         if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
         return v + 0 }
       /^Requests\/sec:/ {rps = $2} /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
       END { if (rps == "" || p50 == "" || p99 == "") exit 1; printf "%s %.3f %.3f\n", rps, p50, p99 }' "$1"
}

# wrk_ok FILE: fails (and shows the output) if any answer was not 2xx.
wrk_ok() { if grep -q 'Non-2xx' "$1"; then cat "$1" >&2; echo "requests failed" >&2; return 1; fi; }

# rss_mib PID: the process's resident set (VmRSS), MiB.
rss_mib() { awk '/^VmRSS:/ {printf "%.1f\n", $2 / 1024}' "/proc/$1/status"; }

# rss_sampler PID FILE: appends VmRSS (MiB) every 0.2 s until killed (run it in the background).
rss_sampler() { while [ -r "/proc/$1/status" ]; do rss_mib "$1" >>"$2"; sleep 0.2; done; }

# figure NAME VALUE UNIT BASELINE RATIO TARGET [NOTE]: one result line for write_results.
# Empty means null. RATIO empty = VALUE / BASELINE when there is a baseline. The target is a
# lower bound on the ratio (on the value when there is no ratio), except for times and memory
# (unit ms, s or MiB): there it is an upper bound on the value. A figure without a target is
# reported only (target and pass null).
figure() {
  jq -cn --arg name "$1" --arg value "$2" --arg unit "$3" --arg baseline "${4:-}" --arg ratio "${5:-}" \
    --arg target "${6:-}" --arg note "${7:-}" '
    def num: if . == "" or . == "null" then null else tonumber end;
    ($value | num) as $v | ($baseline | num) as $b | ($target | num) as $t |
    (if ($ratio | num) != null then ($ratio | num)
     elif $b != null and $v != null and $b != 0 then $v / $b else null end) as $r |
    {name: $name, value: $v, unit: $unit, baseline: $b,
     ratio: (if $r == null then null else ($r * 1000 | round) / 1000 end),
     target: $t,
     pass: (if $t == null then null
            elif ($unit | test("^(ms|s|MiB)$")) then ($v != null and $v < $t)
            else (if $r != null then $r else $v end) as $x | ($x != null and $x >= $t) end)}
    + (if $note == "" then {} else {note: $note} end)' >>"$WORK/figures.jsonl"
}

# write_results AREA [MACHINE-JSON]: $BENCH_OUT/AREA.json in the pinned shape
# {"commit","machine":{cores,memory_mib,postgresql,…},"figures":[…]} from the figure lines, and
# a table on stdout. Call it while the cluster still runs: the PostgreSQL version is the server's.
write_results() {
  local area=$1 extra=${2:-'{}'} out="${BENCH_OUT:-bench/results}" pg
  mkdir -p "$out"
  pg=$(psql_admin -c 'SHOW server_version' 2>/dev/null | awk '{print $1}') || pg=""
  jq -s --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" --arg cores "$(nproc)" \
    --arg mem "$(free -m | awk '/Mem:/{print $2}')" --arg pg "$pg" --argjson extra "$extra" '
    {commit: $commit,
     machine: ({cores: ($cores | tonumber), memory_mib: ($mem | tonumber),
                postgresql: (if $pg == "" then null else $pg end)} + $extra),
     figures: .}' "$WORK/figures.jsonl" >"$out/$area.json"
  echo
  jq -r '.figures[] | [.name, (.value|tostring), .unit, (.baseline|tostring), (.ratio|tostring), (.target|tostring), (.pass|tostring)] | @tsv' \
    "$out/$area.json" | column -t -s $'\t' -N "figure,value,unit,baseline,ratio,target,pass"
  echo "(written to $out/$area.json)"
}

# figure_fails REASON: marks the figure written last as failed (pass false, reason in its note),
# for a measurement that ran but whose requests did not all succeed.
figure_fails() {
  local last
  last=$(tail -1 "$WORK/figures.jsonl")
  sed -i '$d' "$WORK/figures.jsonl"
  jq -c --arg why "$1" '.pass = false | .note = ((if .note then .note + "; " else "" end) + $why)' <<<"$last" >>"$WORK/figures.jsonl"
}

# remove_workdir: removes $WORK and, first, every embedded cluster a server placed outside it.
# Running as root, the server puts its cluster under /var/lib/palisade/clusters/<hash> when the
# postgres user cannot enter the data directory; `rm -rf $WORK` alone would leave it behind.
remove_workdir() {
  [ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
  local loc dir
  for loc in "$WORK"/*/embedded-pg/cluster-location; do
    [ -f "$loc" ] || continue
    dir=$(cat "$loc")
    case "$dir" in /var/lib/palisade/clusters/?*) rm -rf "$dir" ;; esac
  done
  rm -rf "$WORK"
}
