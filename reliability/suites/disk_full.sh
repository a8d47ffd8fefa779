#!/usr/bin/env bash
# Disk full (issue #10, item 4): the data directory (and so the embedded cluster's files) on a
# small tmpfs; a filler file takes the last free byte while a write load runs. Writes must fail
# with 503 problem+json (never 500, never a dropped connection), a failed create leaves neither
# a record nor an audit event, and once the filler is gone writes succeed again without a
# restart, within a bounded wait. Afterwards: every acknowledged write is present, every record
# has its audit event, every organization's chain verifies, pg_amcheck is clean.
#   REL_MODE=quick: one round; REL_MODE=full: three rounds, longer at the full disk.
# Needs root (mount -t tmpfs). Without it the suite reports itself not run: fault injection with
# fiu-run (LD_PRELOAD) cannot reach PostgreSQL, which the server starts with a cleared environment.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=../fault_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../fault_lib.sh"

rel_begin disk_full
MOUNTED=""
# After the server and its postmaster stopped (crash_cleanup), before the cluster's files go.
unmount() {
  [ -n "$MOUNTED" ] || return 0
  umount "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED"
  rmdir "$MOUNTED" 2>/dev/null
}
FAULT_BEFORE_FORGET=unmount
trap crash_cleanup EXIT
trap 'exit 143' TERM INT HUP

if [ "$REL_MODE" = full ]; then ROUNDS=3; FULL_SECS=10; else ROUNDS=1; FULL_SECS=3; fi
FS_MIB=256       # the cluster after migrations takes about 60 MiB of it (WAL included)
RECOVER_SECS=60  # the bound on recovering by itself once space returns

# Running as root, the embedded cluster lives where the postgres user can reach it: the data
# directory is private (0700, control E5), so its files go to
# /var/lib/palisade/clusters/<first 16 hex digits of sha256(data dir)> (embedded/layout.rs). The
# small filesystem goes there, under the cluster's own files.
mkdir -m 700 "$WORK/data"
CLUSTER_ROOT=/var/lib/palisade/clusters/$(python3 -c 'import hashlib, os, sys; print(hashlib.sha256(os.path.realpath(sys.argv[1]).encode()).hexdigest()[:16])' "$WORK/data")
if [ "$(id -u)" != 0 ] || ! mkdir -p "$CLUSTER_ROOT" ||
  ! mount -t tmpfs -o "size=${FS_MIB}m,mode=0700" tmpfs "$CLUSTER_ROOT" 2>"$WORK/mount.err"; then
  rmdir "$CLUSTER_ROOT" 2>/dev/null
  rel_not_run disk_full "cannot mount a tmpfs here ($(cat "$WORK/mount.err" 2>/dev/null || echo 'not root')); fiu-run cannot inject ENOSPC into the embedded PostgreSQL (the server starts it with a cleared environment, so LD_PRELOAD does not reach it)"
  exit 0
fi
MOUNTED=$CLUSTER_ROOT
rel_note "the embedded cluster ($CLUSTER_ROOT) on a ${FS_MIB} MiB tmpfs"

PORT=$(rel_port)
if ! crash_start "$PORT"; then
  tail -20 "$WORK/server.log"
  rel_case fail "the server starts with its data directory on a tmpfs"
  rel_result; exit 0
fi
embedded_pg_env
crash_setup 2 || { rel_case fail "setup: user, organizations, collections"; rel_result; exit 0; }
SERVER_AT_START=$SERVER_PID

now() { date +%s.%N; }
# answers_after T [FILTER-AWK]: load lines answered after unix time T.
answers_after() { cat "$1"/*.tsv | awk -F'\t' -v t="$2" '$6 > t'; }

# fill: takes every free block of the filesystem (tmpfs allocates on write).
fill() {
  dd if=/dev/zero of="$MOUNTED/filler" bs=1M status=none 2>/dev/null
  dd if=/dev/zero of="$MOUNTED/filler.tail" bs=4k status=none 2>/dev/null
  sync
}

round() { # N
  local n=$1 dir="$WORK/load-$1" t_fill t_free t_back="" waited failed
  echo "--> round $n: fill the disk under load"
  crash_start_load "$dir" 3000 2
  sleep 2
  t_fill=$(now)
  fill
  rel_note "round $n: free space after filling: $(df --output=avail -B1 "$MOUNTED" | tail -1 | tr -d ' ') bytes"
  # Wait (bounded) until writes start failing, then keep the disk full a while longer.
  waited=0
  for _ in $(seq 1 300); do
    failed=$(answers_after "$dir" "$t_fill" | awk -F'\t' '$2 !~ /^2/' | wc -l)
    [ "$failed" -gt 0 ] && break
    sleep 0.1; waited=$((waited + 1))
  done
  rel_check "round $n: with the disk full, writes fail (first failure after $((waited / 10)) s)" test "$failed" -gt 0
  # WAL too: switch segments until PostgreSQL needs a new one it cannot create (it PANICs and
  # restarts; the clients must still see 503 only).
  local i
  for i in 1 2 3 4 5 6; do
    psql_admin -c "SELECT pg_switch_wal()" >/dev/null 2>>"$WORK/switch.err" || break
    sleep 0.3
  done
  rel_note "round $n: WAL switches before the database refused: $((i - 1))"
  sleep "$FULL_SECS"
  local code
  code=$(curl -s -o "$WORK/probe.body" -D "$WORK/probe.head" -w '%{http_code}' -X POST \
    "$B/api/v1/orgs/${ORGS[0]}/collections/$COLLECTION/records" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"data":{"title":"probe-full","status":"open"}}')
  rel_check "round $n: a write on the full disk answers 503 problem+json (got $code)" \
    crash_is_unavailable "$code" "$WORK/probe.head" "$WORK/probe.body"
  t_free=$(now)
  rm -f "$MOUNTED/filler" "$MOUNTED/filler.tail"
  for _ in $(seq 1 $((RECOVER_SECS * 10))); do
    # Recovered: every worker's last answer since the space returned is a success.
    if [ "$(answers_after "$dir" "$t_free" | awk -F'\t' '$2 ~ /^2/' | wc -l)" -ge 5 ] &&
      curl -sf -o /dev/null -X POST "$B/api/v1/orgs/${ORGS[0]}/collections/$COLLECTION/records" \
        -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d '{"data":{"title":"probe-back","status":"open"}}'; then
      t_back=$(now); break
    fi
    sleep 0.1
  done
  if [ -n "$t_back" ]; then
    rel_case ok "round $n: writes succeed again by themselves once space returns ($(python3 -c "print(f'{$t_back - $t_free:.1f}')") s, bound ${RECOVER_SECS} s)"
  else
    rel_case fail "round $n: writes succeed again by themselves once space returns (not within ${RECOVER_SECS} s)"
  fi
  rel_note "round $n: the server's keeper started the postmaster again $(grep -c 'exited on its own' "$WORK/server.log") time(s) so far (PostgreSQL gave up while the disk was full)"
  rel_check "round $n: the server was never restarted" test "$SERVER_PID" = "$SERVER_AT_START" -a -d "/proc/$SERVER_PID"
  sleep 1
  crash_stop_load
  # What the load saw: at the full disk only 503 problem+json; every request got an answer.
  local s n_all ok u bad503 conn other rest
  s=$(cat "$dir"/*.tsv | awk -F'\t' '
    { n++ } $2 ~ /^2/ { ok++ } $2 == 0 { conn++ }
    $2 == 503 { u++; if ($3 !~ /application\/problem\+json/ || $5 !~ /unavailable/) bad503++ }
    $2 != 0 && $2 !~ /^2/ && $2 != 503 { other++; codes[$2]++ }
    END { printf "%d %d %d %d %d %d", n, ok + 0, u + 0, bad503 + 0, conn + 0, other + 0;
          for (c in codes) printf " %s:%d", c, codes[c] }')
  read -r n_all ok u bad503 conn other rest <<<"$s"
  rel_note "round $n: $n_all writes: $ok acknowledged, $u answered 503, $conn without an answer${rest:+, other: $rest}"
  rel_check "round $n: every failed write answered 503 problem+json of type unavailable (other: ${rest:-none}, 503 not problem+json: $bad503)" \
    test "$other" = 0 -a "$bad503" = 0
  rel_check "round $n: every write got an answer (none dropped: $conn)" test "$conn" = 0
  # A failed create left nothing behind: none of its markers is in a record.
  cat "$dir"/*.tsv | awk -F'\t' '$2 !~ /^2/ {print $1}' | sort >"$WORK/failed.txt"
  local leaked=unknown
  if psql_admin -c "SELECT data->>'title' FROM palisade.records" >"$WORK/titles.raw"; then
    sort "$WORK/titles.raw" >"$WORK/titles.txt"
    leaked=$(comm -12 "$WORK/failed.txt" "$WORK/titles.txt" | wc -l)
  fi
  rel_check "round $n: no failed create left a record ($(wc -l <"$WORK/failed.txt") failed, $leaked present)" \
    test "$leaked" = 0
  crash_check_state "round $n"
}

for n in $(seq 1 "$ROUNDS"); do round "$n"; done

rel_result
exit 0
