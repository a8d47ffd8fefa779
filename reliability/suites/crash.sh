#!/usr/bin/env bash
# Crash safety (issue #10, item 3): under a steady write load, kill -9 the server, and separately
# the embedded PostgreSQL postmaster; after restart every acknowledged write is present, every
# record has its record.created audit event (and no such event lacks its record), every
# organization's audit chain verifies and pg_amcheck reports nothing. While the database is gone
# the server answers 503 problem+json, never 500, and the database comes back by itself (the
# server's keeper thread starts the postmaster again).
#   REL_MODE=quick: one round of each kind, 3 s of load before the kill.
#   REL_MODE=full:  three rounds of each kind, 8 s of load before the kill.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=../fault_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../fault_lib.sh"

rel_begin crash
trap crash_cleanup EXIT
trap 'exit 143' TERM INT HUP

if [ "$REL_MODE" = full ]; then ROUNDS=3; LOAD_SECS=8; else ROUNDS=1; LOAD_SECS=3; fi
PORT=$(rel_port)

if ! crash_start "$PORT"; then
  rel_case fail "the server starts on a fresh data directory"
  rel_result; exit 0
fi
embedded_pg_env
crash_setup 2 || { rel_case fail "setup: user, organizations, collections"; rel_result; exit 0; }

# One round: load, kill -9 (server or postmaster), restart, let the load run on, stop, check.
round() { # KIND N
  local kind=$1 n=$2 victim old_pm t_kill
  echo "--> round $n: kill -9 the $kind under load"
  crash_start_load "$WORK/load-$kind-$n"
  sleep "$LOAD_SECS"
  old_pm=$(crash_postmaster_pid)
  if [ "$kind" = server ]; then victim=$SERVER_PID; else victim=$old_pm; fi
  t_kill=$(date +%s.%N)
  kill -KILL "$victim"
  if [ "$kind" = server ]; then
    wait "$SERVER_PID" 2>/dev/null
    # The postmaster has a parent-death signal (SIGINT, fast shutdown): it must not linger.
    rel_check "round $n ($kind): the orphaned postmaster shut itself down within 30 s" crash_wait_gone "$old_pm" 300
  else
    # The server stays up and answers 503 while the database is gone; its keeper thread starts
    # the postmaster again (PostgreSQL's crash recovery), so it comes back without a restart.
    local seen="" back="" code
    for _ in $(seq 1 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' "$B/readyz")
      [ "$code" = 503 ] && { seen=1; break; }
      sleep 0.05
    done
    rel_check "round $n ($kind): /readyz answers 503 while the database is gone" test -n "$seen"
    for _ in $(seq 1 600); do
      curl -sf -o /dev/null "$B/readyz" && { back=$(crash_since "$t_kill"); break; }
      sleep 0.1
    done
    rel_check "round $n ($kind): the database comes back by itself, no server restart (${back:-not within 60} s)" \
      test -n "$back" -a "$(crash_postmaster_pid)" != "$old_pm"
    rel_check "round $n ($kind): the server process kept running" kill -0 "$SERVER_PID"
    sleep 1
    crash_check_outage "round $n ($kind)" "$WORK/load-$kind-$n" "$t_kill"
    # And a clean restart of the server on the same data directory afterwards.
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null
  fi
  local t_restart
  t_restart=$(date +%s.%N)
  if crash_start "$PORT"; then
    rel_case ok "round $n ($kind): the server restarts on the same data directory ($(crash_since "$t_restart") s)"
  else
    rel_case fail "round $n ($kind): the server restarts on the same data directory"
    tail -20 "$WORK/server.log"
    crash_stop_load
    return 1
  fi
  embedded_pg_env
  sleep 2
  crash_stop_load
  crash_check_load "round $n ($kind)" "$WORK/load-$kind-$n" "$t_kill" "$kind"
  crash_check_state "round $n ($kind)"
}

for n in $(seq 1 "$ROUNDS"); do
  round server "$n" || break
  round postmaster "$n" || break
done

rel_result
exit 0
