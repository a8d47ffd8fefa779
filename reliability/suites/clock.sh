# Clock faults (issue #10, item 5): the server and its embedded PostgreSQL run under libfaketime
# with the clock skewed +1 h and -1 h from real time, and stepped while they run. Access tokens,
# refresh tokens, TOTP, the account lockout and audit retention must follow the server's clock as
# specified, and nothing may crash (process alive, no 5xx answered or logged, no panic logged).
#
# How the clock is faked: LD_PRELOAD=libfaketime.so.1 with FAKETIME_TIMESTAMP_FILE (a relative
# offset such as "+3600", replaced atomically) and FAKETIME_NO_CACHE=1, so a step takes effect on
# the next clock reading. FAKETIME_DONT_FAKE_MONOTONIC=1: an NTP step moves CLOCK_REALTIME only,
# so timers (tokio's Instant, PostgreSQL's timeouts) keep running on true monotonic time, as they
# would on a real machine. The server starts PostgreSQL with a cleared environment
# (embedded/process.rs: env_clear), so an inherited LD_PRELOAD would not reach it; the suite
# points PALISADE_PG_BIN_DIR at wrappers for `postgres` and `initdb` that preload the same
# library with the same file: one machine, one clock (purge_audit compares against the
# database's now(), so a database on the real clock would be a different, unrealistic fault).
#
# Phases, each a fresh data directory: "+1h" (started skewed forward), "-1h" (started skewed
# back), "jump" (started on real time, stepped +1 h and then -1 h while running). In each: start
# and answer; TOTP for the server's time accepted and for real time refused; access token
# expiry, refresh within and past its lifetime; lockout with steps forward and backward; audit
# retention (quick mode: in the jump phase only, to stay well within CI's budget on a loaded
# 2-core machine; full mode: in every phase).
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
rel_begin clock
# The embedded cluster of a data directory the postgres user cannot enter lives under
# /var/lib/palisade/clusters (embedded/layout.rs); it is this suite's, so it goes too.
suite_cleanup() {
  local f dirs=() d pid
  for f in "$WORK"/data-*/embedded-pg/cluster-location; do [ -f "$f" ] && dirs+=("$(cat "$f")"); done
  rel_cleanup
  for d in "${dirs[@]}"; do
    case $d in /var/lib/palisade/clusters/?*) ;; *) continue ;; esac
    pid=$(head -1 "$d/pgdata/postmaster.pid" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -QUIT "$pid" 2>/dev/null && sleep 0.5
    rm -rf "$d"
  done
  [ -n "${CLOCK_DIR:-}" ] && rm -rf "$CLOCK_DIR"
}
trap suite_cleanup EXIT
# The clock file and the PostgreSQL wrappers must be reachable by the cluster's user (postgres)
# whatever REL_TMP's parents allow: a directory of their own under /tmp.
CLOCK_DIR=$(mktemp -d /tmp/palisade-rel-clock-bin.XXXXXX); chmod 755 "$CLOCK_DIR"

FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
need_pkg() { # need_pkg TEST-PATH PACKAGE
  [ -e "$1" ] && return 0
  [ "$(id -u)" = 0 ] || return 1
  echo "==> apt-get install $2"
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1; }
  [ -e "$1" ]
}
need_pkg "$FAKETIME_LIB" libfaketime || { rel_not_run clock "libfaketime is not installed and cannot be (apt-get install libfaketime)"; exit 0; }
need_pkg /usr/bin/oathtool oathtool || { rel_not_run clock "oathtool is not installed and cannot be (apt-get install oathtool)"; exit 0; }
PG_REAL=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -1)")
[ -x "$PG_REAL/postgres" ] || { rel_not_run clock "no PostgreSQL server binaries under /usr/lib/postgresql"; exit 0; }

MIN=60; HOUR=3600; DAY=86400
PW=$REL_PASSWORD

# ------------------------------------------------------------------ the fake clock
OFF=0 # the server's clock minus real time, seconds
clock_file() { echo "$CLOCK_DIR/faketime"; }
# clock_set SECONDS: steps the server's clock to real time + SECONDS (atomic replace).
clock_set() {
  OFF=$1
  local sign=+; [ "$OFF" -lt 0 ] && sign=-
  printf '%s%d\n' "$sign" "${OFF#-}" >"$CLOCK_DIR/faketime.new"
  chmod 644 "$CLOCK_DIR/faketime.new"
  mv -f "$CLOCK_DIR/faketime.new" "$(clock_file)"
}
server_now() { echo $(($(date +%s) + OFF)); }
faked_env() {
  echo "LD_PRELOAD=$FAKETIME_LIB FAKETIME_TIMESTAMP_FILE=$(clock_file) FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1"
}

# PostgreSQL binaries with the same clock (see the header).
make_pg_wrappers() {
  mkdir -p "$CLOCK_DIR/pgbin"; chmod 755 "$CLOCK_DIR/pgbin"
  local f b
  for f in "$PG_REAL"/*; do ln -sf "$f" "$CLOCK_DIR/pgbin/"; done
  for b in postgres initdb; do
    rm -f "$CLOCK_DIR/pgbin/$b"
    printf '#!/bin/sh\nexec env %s %s "$@"\n' "$(faked_env)" "$PG_REAL/$b" >"$CLOCK_DIR/pgbin/$b"
    chmod 755 "$CLOCK_DIR/pgbin/$b"
  done
}

# start_faked PORT: the server (debug or release, REL_BIN) on the faked clock over its own
# embedded cluster in $DATA. Refresh families live 1 day and sessions idle out after 24 h, so the
# refresh case can tell the family's lifetime from the idle timeout; access tokens keep their
# default 15 minutes; the lockout keeps its default 6 attempts / 15 minutes.
start_faked() {
  local port=$1
  # shellcheck disable=SC2046
  env $(faked_env) PALISADE_PG_BIN_DIR="$CLOCK_DIR/pgbin" PALISADE_DATA_DIR="$DATA" PALISADE_LOG_LEVEL=info \
    PALISADE_RATE_LIMITS=off PALISADE_REFRESH_LIFETIME_DAYS=1 PALISADE_SESSION_IDLE_MINUTES=1440 \
    "$BIN" serve --listen "127.0.0.1:$port" --insecure-http >>"$DATA.log" 2>&1 &
  SERVER_PID=$!
  B="http://127.0.0.1:$port"
  local _
  for _ in $(seq 1 300); do
    curl -sf "$B/readyz" >/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf "$B/readyz" >/dev/null
}
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null
  local _
  for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}

# ------------------------------------------------------------------ HTTP helpers
# call METHOD PATH TOKEN [JSON]: sets ST (status), CT (content type), BODY. Every answer is kept
# in $WORK/answers so that a 5xx anywhere fails the phase.
call() {
  local args=(-s -X "$1" "$B$2" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}')
  [ -n "$3" ] && args+=(-H "authorization: Bearer $3")
  [ $# -ge 4 ] && args+=(-H 'content-type: application/json' -d "$4")
  ST=$(curl "${args[@]}") || ST=000
  BODY=$(cat "$WORK/body" 2>/dev/null)
  CT=$(awk 'tolower($1) == "content-type:" {print $2}' "$WORK/headers" | tr -d '\r')
  echo "$ST $1 $2 (clock $OFF)" >>"$WORK/answers"
}
login() { call POST /api/v1/auth/login "" "$(jq -cn --arg e "$1" --arg p "$2" '{email: $e, password: $p}')"; }
is_problem_401() { [ "$ST" = 401 ] && [ "$CT" = application/problem+json ] && jq -e '.status == 401' <<<"$BODY" >/dev/null; }
totp_at() { oathtool --totp -b "$1" -N "@$2"; }

# new_user EMAIL: signed up, verified, signed in; sets TOKEN and REFRESH.
new_user() {
  call POST /api/v1/auth/signup "" "$(jq -cn --arg e "$1" --arg p "$PW" '{email: $e, password: $p, name: "Clock"}')"
  psql_admin -c "UPDATE palisade.users SET email_verified_at = now() WHERE email = '$1'" >/dev/null || return 1
  login "$1" "$PW"
  [ "$ST" = 200 ] || return 1
  TOKEN=$(jq -r .access_token <<<"$BODY"); REFRESH=$(jq -r .refresh_token <<<"$BODY")
}

# ------------------------------------------------------------------ cases
case_answers() { # case_answers LABEL
  call GET /api/v1/me "$TOKEN"
  local ok=1; [ "$ST" = 200 ] || ok=0
  call GET /readyz ""; [ "$ST" = 200 ] || ok=0
  [ $ok = 1 ] && rel_case ok "$1: the server answers on a clock $2" || rel_case fail "$1: the server answers on a clock $2 (got $ST)"
}

# TOTP: a code for the server's time is accepted, one for real time (1 h away) is refused, at
# enrolment and at sign-in. ENROLL_ONLY=1 enrols and returns (for the jump: sign in after it).
totp_enrol() { # EMAIL; sets SECRET
  new_user "$1" || return 1
  call POST /api/v1/me/mfa/totp "$TOKEN"
  [ "$ST" = 201 ] || return 1
  SECRET=$(jq -r .secret <<<"$BODY")
  # The code below is for the previous step: if the server's clock crossed into the next step
  # between reading the time and the confirmation, it would be two steps back and refused (a
  # flake seen once in CI). Read the time well inside a step.
  while [ $(( $(server_now) % 30 )) -ge 25 ]; do sleep 1; done
  local now; now=$(server_now)
  # Real time is an hour away: refused (a 4xx, never a 5xx). (On real time there is nothing to tell.)
  TOTP_REAL_CONFIRM=""
  if [ "$OFF" != 0 ]; then
    call POST /api/v1/me/mfa/totp/confirm "$TOKEN" "$(jq -cn --arg c "$(totp_at "$SECRET" $((now - OFF)))" '{code: $c}')"
    TOTP_REAL_CONFIRM=$ST
  fi
  # The previous step (allowed skew) for the server's time, so the sign-in can use the current one.
  call POST /api/v1/me/mfa/totp/confirm "$TOKEN" "$(jq -cn --arg c "$(totp_at "$SECRET" $((now - 30)))" '{code: $c}')"
  [ "$ST" = 200 ]
}
totp_sign_in() { # LABEL EMAIL REAL_AT_DESCRIPTION: the second step with real time's and server time's codes
  local label=$1 email=$2 challenge real_st now
  login "$email" "$PW"
  challenge=$(jq -r '.challenge_token // empty' <<<"$BODY")
  [ "$ST" = 200 ] && [ -n "$challenge" ] || { rel_case fail "$label: TOTP sign-in asks for the second factor (got $ST)"; return; }
  now=$(server_now)
  call POST /api/v1/auth/mfa "" "$(jq -cn --arg t "$challenge" --arg c "$(totp_at "$SECRET" $((now - OFF)))" '{challenge_token: $t, code: $c}')"
  real_st=$ST
  if is_problem_401; then rel_case ok "$label: TOTP code for real time (${OFF}s from the server's clock) refused with 401 problem+json"
  else rel_case fail "$label: TOTP code for real time (${OFF}s from the server's clock) refused (got $real_st)"; fi
  now=$(server_now)
  call POST /api/v1/auth/mfa "" "$(jq -cn --arg t "$challenge" --arg c "$(totp_at "$SECRET" "$now")" '{challenge_token: $t, code: $c}')"
  if [ "$ST" = 200 ] && jq -e '.access_token' <<<"$BODY" >/dev/null; then
    rel_case ok "$label: TOTP code for the server's own time accepted"
  else rel_case fail "$label: TOTP code for the server's own time accepted (got $ST: ${BODY:0:200})"; fi
}
case_totp() { # LABEL EMAIL
  if ! totp_enrol "$2"; then rel_case fail "$1: TOTP enrolment with a code for the server's time (got $ST: ${BODY:0:200})"; return; fi
  if [ "$TOTP_REAL_CONFIRM" -ge 400 ] && [ "$TOTP_REAL_CONFIRM" -lt 500 ]; then
    rel_case ok "$1: TOTP confirmation with a code for real time refused ($TOTP_REAL_CONFIRM), server-time code confirmed"
  else rel_case fail "$1: TOTP confirmation with a code for real time refused (got $TOTP_REAL_CONFIRM)"; fi
  totp_sign_in "$1" "$2"
}

# Access token: valid at +14 min, 401 problem+json at +16 min. Refresh at +16 min works and its
# access token works; refresh at +23 h works (family lifetime 1 day); at +24 h 10 min it is 401.
case_tokens() { # LABEL EMAIL
  local label=$1 base=$OFF old ok
  new_user "$2" || { rel_case fail "$label: tokens: sign-in (got $ST)"; return; }
  old=$TOKEN
  clock_set $((base + 14 * MIN))
  call GET /api/v1/me "$old"
  [ "$ST" = 200 ] && rel_case ok "$label: access token still valid 14 min after sign-in" ||
    rel_case fail "$label: access token still valid 14 min after sign-in (got $ST)"
  clock_set $((base + 16 * MIN))
  call GET /api/v1/me "$old"
  is_problem_401 && rel_case ok "$label: access token refused with 401 problem+json after a jump past its 15 min" ||
    rel_case fail "$label: access token refused with 401 problem+json after a jump past its 15 min (got $ST $CT)"
  call POST /api/v1/auth/refresh "" "$(jq -cn --arg r "$REFRESH" '{refresh_token: $r}')"
  ok=0
  if [ "$ST" = 200 ]; then
    TOKEN=$(jq -r .access_token <<<"$BODY"); REFRESH=$(jq -r .refresh_token <<<"$BODY")
    call GET /api/v1/me "$TOKEN"; [ "$ST" = 200 ] && ok=1
  fi
  [ $ok = 1 ] && rel_case ok "$label: refresh after the access token expired gives a working access token" ||
    rel_case fail "$label: refresh after the access token expired gives a working access token (got $ST)"
  clock_set $((base + 23 * HOUR))
  call POST /api/v1/auth/refresh "" "$(jq -cn --arg r "$REFRESH" '{refresh_token: $r}')"
  if [ "$ST" = 200 ]; then
    REFRESH=$(jq -r .refresh_token <<<"$BODY")
    rel_case ok "$label: refresh still works 23 h after sign-in (family lifetime 1 day)"
  else rel_case fail "$label: refresh still works 23 h after sign-in (family lifetime 1 day) (got $ST)"; fi
  clock_set $((base + 24 * HOUR + 10 * MIN))
  call POST /api/v1/auth/refresh "" "$(jq -cn --arg r "$REFRESH" '{refresh_token: $r}')"
  is_problem_401 && rel_case ok "$label: refresh refused with 401 problem+json past the family's lifetime" ||
    rel_case fail "$label: refresh refused with 401 problem+json past the family's lifetime (got $ST)"
}

# Lockout: 6 wrong passwords lock; the right one is refused while locked, also after a jump 2 h
# back and at +14 min; after a jump past 15 min it gets in.
case_lockout() { # LABEL EMAIL
  local label=$1 email=$2 base=$OFF i bad=0 until_ok until
  new_user "$email" || { rel_case fail "$label: lockout: sign-up (got $ST)"; return; }
  for i in 1 2 3 4 5 6; do login "$email" "wrong-password-$i"; [ "$ST" = 401 ] || bad=1; done
  login "$email" "$PW"
  until=$(psql_admin -c "SELECT extract(epoch FROM locked_until)::bigint FROM palisade.login_attempts
    WHERE email_digest = sha256(convert_to('$email', 'UTF8'))")
  until_ok=0; [ -n "$until" ] && [ $((until - ($(server_now) + 15 * MIN))) -le 5 ] &&
    [ $((until - ($(server_now) + 15 * MIN))) -ge -30 ] && until_ok=1
  { [ $bad = 0 ] && is_problem_401 && [ $until_ok = 1 ]; } &&
    rel_case ok "$label: 6 wrong passwords lock the account for 15 min of the server's clock" ||
    rel_case fail "$label: 6 wrong passwords lock the account for 15 min of the server's clock (status $ST, locked_until $until, server now $(server_now))"
  clock_set $((base - 2 * HOUR))
  login "$email" "$PW"
  local back=$ST
  login "$email" "wrong-password-back"
  is_problem_401 && [ "$back" = 401 ] && kill -0 "$SERVER_PID" 2>/dev/null &&
    rel_case ok "$label: a jump 2 h back does not unlock early (right password still 401) nor crash" ||
    rel_case fail "$label: a jump 2 h back does not unlock early nor crash (right password got $back)"
  clock_set $((base + 14 * MIN))
  login "$email" "$PW"
  is_problem_401 && rel_case ok "$label: still locked 14 min after the lock" ||
    rel_case fail "$label: still locked 14 min after the lock (got $ST)"
  clock_set $((base + 16 * MIN))
  login "$email" "$PW"
  [ "$ST" = 200 ] && rel_case ok "$label: a jump past the 15 min lock lets the right password in" ||
    rel_case fail "$label: a jump past the 15 min lock lets the right password in (got $ST)"
}

# Audit retention. The sequencer applies it at start and then whenever a day of the server's
# clock has passed since its last run, just before sealing; so once an event written after a
# step is sealed, retention has run on the stepped clock. Batch A is written, the clock moves
# 2 days, batch B is written; at A + 365 d - 1 h nothing may go, at A + 366 d exactly A goes (B
# is 364 days old), and a jump back (while running, then a restart on that clock, which applies
# retention at start) removes nothing more. The chain still verifies (palisade audit verify).
org_events() { psql_admin -c "SELECT id FROM palisade.audit_events WHERE tenant_id = '$ORG_UUID' ORDER BY id"; }
unsealed() {
  psql_admin -c "SELECT count(*) FROM palisade.audit_events e WHERE e.tenant_id = '$ORG_UUID'
                   AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = e.id)"
}
# after_step EMAIL: signs in again on the stepped clock and writes a marker event (an org rename),
# then waits until the sequencer has sealed everything (so retention has run after the step).
retention_marker() {
  sleep 0.6
  login "$1" "$PW"; TOKEN=$(jq -r .access_token <<<"$BODY")
  MARK=$((MARK + 1))
  call PATCH "/api/v1/orgs/$ORG" "$TOKEN" "$(jq -cn --arg n "Clock retention $MARK" '{name: $n}')"
  [ "$ST" = 200 ] || return 1
  local _
  for _ in $(seq 1 100); do [ "$(unsealed)" = 0 ] && return 0; sleep 0.1; done
  return 1
}
case_retention() { # LABEL EMAIL PORT
  local label=$1 email=$2 base=$OFF a b now left
  MARK=0
  new_user "$email" || { rel_case fail "$label: retention: sign-up (got $ST)"; return; }
  call POST /api/v1/orgs "$TOKEN" "$(jq -cn '{name: "Clock retention"}')"
  ORG=$(jq -r .id <<<"$BODY")
  ORG_UUID=$(psql_admin -c "SELECT o.tenant_id FROM palisade.orgs o JOIN palisade.memberships m USING (tenant_id)
                             JOIN palisade.users u ON u.id = m.user_id WHERE u.email = '$email'")
  call PATCH "/api/v1/orgs/$ORG" "$TOKEN" '{"audit_retention_days": 365}'
  [ "$ST" = 200 ] && [ -n "$ORG_UUID" ] || { rel_case fail "$label: retention: org with 365-day retention (got $ST)"; return; }
  retention_marker "$email" || { rel_case fail "$label: retention: batch A sealed"; return; }
  org_events >"$WORK/a.ids"
  clock_set $((base + 2 * DAY))
  retention_marker "$email" || { rel_case fail "$label: retention: batch B sealed (+2 d)"; return; }
  org_events | grep -vxF -f "$WORK/a.ids" >"$WORK/b.ids"
  a=$(wc -l <"$WORK/a.ids"); b=$(wc -l <"$WORK/b.ids")
  clock_set $((base + 365 * DAY - HOUR))
  retention_marker "$email" || { rel_case fail "$label: retention: sequencer ran at A + 365 d - 1 h"; return; }
  left=$(org_events | grep -cxF -f "$WORK/a.ids")
  [ "$left" = "$a" ] && rel_case ok "$label: retention at A + 365 d - 1 h (server clock) removes none of batch A ($a events)" ||
    rel_case fail "$label: retention at A + 365 d - 1 h removes none of batch A ($left of $a left)"
  clock_set $((base + 366 * DAY))
  retention_marker "$email" || { rel_case fail "$label: retention: sequencer ran at A + 366 d"; return; }
  org_events >"$WORK/after.ids"
  left=$(grep -cxF -f "$WORK/a.ids" "$WORK/after.ids"); local kept; kept=$(grep -cxF -f "$WORK/b.ids" "$WORK/after.ids")
  [ "$left" = 0 ] && [ "$kept" = "$b" ] &&
    rel_case ok "$label: retention at A + 366 d removes all of batch A ($a) and keeps batch B ($b, 364 days old)" ||
    rel_case fail "$label: retention at A + 366 d removes all of batch A and keeps batch B ($left of $a A left, $kept of $b B kept)"
  # Backwards: 30 days back while running, then a restart on that clock.
  clock_set $((base + 336 * DAY))
  retention_marker "$email" || { rel_case fail "$label: retention: sealing after a jump 30 d back"; return; }
  stop_server
  if ! start_faked "$3"; then rel_case fail "$label: restart on a clock 30 d back"; return; fi
  retention_marker "$email" || { rel_case fail "$label: retention: sealing after the restart 30 d back"; return; }
  kept=$(org_events | grep -cxF -f "$WORK/after.ids")
  [ "$kept" = "$(wc -l <"$WORK/after.ids")" ] &&
    rel_case ok "$label: a jump 30 d back (running, then a restart) removes nothing more" ||
    rel_case fail "$label: a jump 30 d back removes nothing more ($kept of $(wc -l <"$WORK/after.ids") kept)"
  local out
  # shellcheck disable=SC2046
  if out=$(env $(faked_env) PALISADE_PG_BIN_DIR="$CLOCK_DIR/pgbin" PALISADE_DATA_DIR="$DATA" "$BIN" audit verify --org "$ORG" 2>&1); then
    rel_case ok "$label: the org's audit chain verifies after the cut (palisade audit verify)"
  else rel_case fail "$label: the org's audit chain verifies after the cut: $(tail -3 <<<"$out" | tr '\n' ' ')"; fi
}

# Nothing crashed: the process is alive, no 5xx answered (to us) or logged (any request), no panic.
case_no_crash() { # LABEL
  local alive=0 answered logged panics
  kill -0 "$SERVER_PID" 2>/dev/null && alive=1
  answered=$(grep -c '^5' "$WORK/answers" 2>/dev/null); answered=${answered:-0}
  logged=$(grep -c '"status":5[0-9][0-9]' "$DATA.log"); panics=$(grep -ci 'panic' "$DATA.log")
  if [ $alive = 1 ] && [ "$answered" = 0 ] && [ "$logged" = 0 ] && [ "$panics" = 0 ]; then
    rel_case ok "$1: nothing crashed (process alive, $(wc -l <"$WORK/answers") answers without a 5xx, no 5xx or panic in the log)"
  else
    rel_case fail "$1: nothing crashed (alive=$alive, 5xx answered=$answered, 5xx logged=$logged, panics=$panics)"
    grep '^5' "$WORK/answers" | head -5 >&2; grep -i 'panic\|"status":5' "$DATA.log" | head -5 >&2
  fi
}

# ------------------------------------------------------------------ phases
make_pg_wrappers
run_phase() { # LABEL START_OFFSET RETENTION(0|1)
  local label=$1 port
  DATA="$WORK/data-$label"; : >"$WORK/answers"
  port=$(rel_port)
  clock_set "$2"
  local t0=$SECONDS
  if ! start_faked "$port"; then
    rel_case fail "$label: the server starts on a clock ${2}s from real time"; tail -20 "$DATA.log" >&2; stop_server; return
  fi
  embedded_pg_env_for "$DATA"
  new_user "boot-$label@example.com" || { rel_case fail "$label: sign-up and sign-in on a skewed clock (got $ST)"; stop_server; return; }
  case_answers "$label" "${2}s from real time (started in $((SECONDS - t0)) s)"
  if [ "$label" = jump ]; then
    # Enrolled on real time, then stepped +1 h while running: the pre-step (real) code is refused.
    totp_enrol "totp-$label@example.com" || rel_case fail "$label: TOTP enrolment on real time (got $ST)"
    clock_set $HOUR
    login "boot-$label@example.com" "$PW"; TOKEN=$(jq -r '.access_token // empty' <<<"$BODY")
    call GET /api/v1/me "$TOKEN"; [ "$ST" = 200 ] && rel_case ok "$label: signs in and answers after a step +1 h while running" ||
      rel_case fail "$label: signs in and answers after a step +1 h while running (got $ST)"
    totp_sign_in "$label+1h" "totp-$label@example.com"
    case_tokens "$label+1h" "tokens-$label@example.com"
    # Now back to -1 h while running (a step of about 25 h backwards).
    clock_set $((-HOUR))
    new_user "back-$label@example.com" && rel_case ok "$label: answers after a step back to -1 h while running" ||
      rel_case fail "$label: answers after a step back to -1 h while running (got $ST)"
    case_totp "$label-1h" "totp2-$label@example.com"
    case_lockout "$label-1h" "lock-$label@example.com"
  else
    case_totp "$label" "totp-$label@example.com"
    case_tokens "$label" "tokens-$label@example.com"
    case_lockout "$label" "lock-$label@example.com"
  fi
  [ "$3" = 1 ] && case_retention "$label" "audit-$label@example.com" "$port"
  case_no_crash "$label"
  stop_server
  echo "    ($label: $((SECONDS - t0)) s)"
}
# embedded_pg_env reads $WORK/data; each phase has its own data directory.
embedded_pg_env_for() {
  local secrets="$1/embedded-pg" cluster
  cluster=$(cat "$secrets/cluster-location" 2>/dev/null || echo "$1/pg")
  export PGHOST="$cluster/sock" PGPORT=5432 PGDATABASE=palisade
  ADMIN_PW=$(cat "$secrets/admin.password"); APP_PW=$(cat "$secrets/runtime.password")
}

echo "==> libfaketime: relative offsets in a timestamp file, no cache, monotonic clock not faked"
START=$SECONDS
FULL=0; [ "$REL_MODE" = full ] && FULL=1
run_phase +1h $HOUR "$FULL"
run_phase -1h $((-HOUR)) "$FULL"
run_phase jump 0 1
rel_note "clock faults: libfaketime (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1, FAKETIME_DONT_FAKE_MONOTONIC=1: a step moves the wall clock only, like an NTP step); PostgreSQL on the same faked clock through PALISADE_PG_BIN_DIR wrappers (the server clears its environment); refresh family 1 day and idle timeout 24 h so the family's own lifetime is what ends it; retention cases in $([ $FULL = 1 ] && echo "every phase" || echo "the jump phase (quick mode)"); $((SECONDS - START)) s"
rel_result
