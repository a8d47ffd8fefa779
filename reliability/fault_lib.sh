# Steps shared by the crash and disk_full suites (sourced after lib.sh, not run): a restartable
# server, a record-creating load (write_load.py) and the after-the-fact checks.

FAULT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
LOAD_PIDS=()
LOAD_STOPS=()
ORGS=()
LOAD_DIRS=()
COLLECTION=items
SCHEMA='{"type":"object","properties":{"title":{"type":"string"},"status":{"type":"string","enum":["open","done"]},"note":{"type":"string"}},"required":["title","status"]}'

# crash_start PORT: start_palisade, but it appends to the server log, waits up to 90 s and fails
# (instead of exiting the suite) when the server does not come up.
crash_start() {
  PALISADE_DATA_DIR="$WORK/data" PALISADE_LOG_LEVEL=warn PALISADE_RATE_LIMITS=off \
    PALISADE_ACCESS_TOKEN_MINUTES=60 "$BIN" serve --listen "127.0.0.1:$1" --insecure-http >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  B="http://127.0.0.1:$1"
  for _ in $(seq 1 900); do
    curl -sf "$B/readyz" >/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

crash_since() { python3 -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

# crash_setup NORGS: a user (TOKEN) with NORGS organizations (ORGS), each with the collection.
crash_setup() {
  local i org
  TOKEN=$(rel_user "crash-$RANDOM@example.com") || return 1
  for i in $(seq 1 "$1"); do
    org=$(rel_api POST /api/v1/orgs "$TOKEN" "{\"name\":\"Fault $i\"}" | jq -er .id) || return 1
    rel_api POST "/api/v1/orgs/$org/collections" "$TOKEN" "{\"name\":\"$COLLECTION\",\"schema\":$SCHEMA}" >/dev/null ||
      return 1
    ORGS+=("$org")
  done
}

# crash_start_load DIR [PAD] [WORKERS]: write_load.py per organization into DIR/ORG.tsv until
# crash_stop_load.
crash_start_load() {
  local dir=$1 pad=${2:-0} workers=${3:-2} org
  mkdir -p "$dir"
  LOAD_DIRS+=("$dir")
  for org in "${ORGS[@]}"; do
    python3 "$FAULT_DIR/write_load.py" "$B" "$TOKEN" "$org" "$COLLECTION" "$dir/$org.tsv" \
      --workers "$workers" --pad "$pad" --stop "$dir/stop" &
    LOAD_PIDS+=($!)
    rel_track $!
  done
  LOAD_STOPS+=("$dir/stop")
}

crash_stop_load() {
  local f pid
  for f in "${LOAD_STOPS[@]+"${LOAD_STOPS[@]}"}"; do : >"$f" 2>/dev/null; done
  for pid in "${LOAD_PIDS[@]+"${LOAD_PIDS[@]}"}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  LOAD_PIDS=(); LOAD_STOPS=()
}

# crash_cleanup: the EXIT trap of both suites: the load, the server (which stops its postmaster),
# then the cluster's files when they were relocated outside $WORK (running as root they live in
# /var/lib/palisade/clusters/<hash>, which rel_cleanup does not know about). Extra steps
# (unmounting) go in FAULT_BEFORE_FORGET.
FAULT_BEFORE_FORGET=:
crash_cleanup() {
  local cluster pm
  cluster=$(crash_cluster); pm=$(crash_postmaster_pid)
  crash_stop_load
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  [ -n "$pm" ] && crash_wait_gone "$pm" 150
  $FAULT_BEFORE_FORGET
  case "$cluster" in
    /var/lib/palisade/clusters/?*) rm -rf "$cluster" ;;
  esac
  rel_cleanup
}

crash_cluster() { cat "$WORK/data/embedded-pg/cluster-location" 2>/dev/null || echo "$WORK/data/pg"; }
crash_postmaster_pid() { head -1 "$(crash_cluster)/pgdata/postmaster.pid" 2>/dev/null; }

# crash_wait_gone PID TENTHS: waits until the process is gone.
crash_wait_gone() {
  local pid=$1
  [ -n "$pid" ] || return 1
  for _ in $(seq 1 "$2"); do
    [ -d "/proc/$pid" ] || return 0
    grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# crash_is_unavailable STATUS HEADERS BODY: the answer (curl -w status, -D headers, -o body) is a 503
# problem+json of type unavailable.
crash_is_unavailable() { # STATUS HEADERS BODY
  [ "$1" = 503 ] && grep -qi '^content-type: application/problem+json' "$2" && jq -e '.status == 503' "$3" >/dev/null
}

# crash_check_outage LABEL DIR T: the load saw the outage that began at unix time T (503s), and
# every answer that was not a success was a 503 problem+json of type unavailable.
crash_check_outage() {
  local label=$1 u bad
  u=$(cat "$2"/*.tsv | awk -F'\t' -v t="$3" '$6 > t && $2 == 503' | wc -l)
  bad=$(cat "$2"/*.tsv | awk -F'\t' -v t="$3" '$6 > t && $2 != 0 && $2 !~ /^2/ &&
    ($2 != 503 || $3 !~ /application\/problem\+json/ || $5 !~ /unavailable/)' | wc -l)
  rel_check "$label: writes during the outage answered 503 problem+json ($u), nothing else ($bad)" \
    test "$u" -gt 0 -a "$bad" = 0
}

# crash_check_load LABEL DIR: what the load saw. No 500 (or other 5xx than 503), every 503 is
# problem+json, every 4xx is unexpected, and writes succeeded again at the end.
crash_check_load() {
  local label=$1 dir=$2 summary n ok conn u bad503 other noid rest
  summary=$(cat "$dir"/*.tsv | awk -F'\t' '
    { n++ }
    $2 ~ /^2/ { ok++; if ($4 == "") noid++ }
    $2 == 0 { conn++ }
    $2 == 503 { u++; if ($3 !~ /application\/problem\+json/) bad503++ }
    $2 != 0 && $2 !~ /^2/ && $2 != 503 { other++; codes[$2]++ }
    END { printf "%d %d %d %d %d %d %d", n, ok, conn, u, bad503 + 0, other + 0, noid + 0;
          for (c in codes) printf " %s:%d", c, codes[c] }')
  read -r n ok conn u bad503 other noid rest <<<"$summary"
  rel_note "$label: $n writes: $ok acknowledged, $u answered 503, $conn without an answer (server down)${rest:+, other: $rest}"
  rel_check "$label: the load ran and writes were acknowledged ($ok of $n)" test "$ok" -gt 0
  rel_check "$label: every failed write answered 503 problem+json or nothing (no 500; other: ${rest:-none})" \
    test "$other" = 0 -a "$bad503" = 0
  rel_check "$label: every acknowledged write carries a record id" test "$noid" = 0
  # The last answers of each worker (after the restart) are successes: the service is back.
  local tail_bad
  tail_bad=$(for f in "$dir"/*.tsv; do tail -3 "$f"; done | awk -F'\t' '$2 !~ /^2/' | wc -l)
  rel_check "$label: writes succeed again after the recovery (last answers of every worker 2xx)" test "$tail_bad" = 0
}

# crash_load_lines [-H]: every line the load wrote so far (-H: prefixed with its organization).
crash_load_lines() {
  local d f
  for d in "${LOAD_DIRS[@]}"; do
    for f in "$d"/*.tsv; do
      [ -f "$f" ] || continue
      if [ "${1:-}" = -H ]; then sed "s|^|$(basename "$f" .tsv)\t|" "$f"; else cat "$f"; fi
    done
  done
}

# TypeID (rec_…) → UUID, one per line.
typeid_uuid() {
  python3 -c '
import sys, uuid
A = "0123456789abcdefghjkmnpqrstvwxyz"
for line in sys.stdin:
    s = line.strip().split("_")[-1]
    if not s: continue
    v = 0
    for ch in s: v = v * 32 + A.index(ch)
    print(uuid.UUID(int=v))'
}

# crash_check_state LABEL: the database after the fault, against every acknowledged write so far.
crash_check_state() {
  local label=$1 missing orphans unaudited org verdict bad=0 verified=0 out acked
  crash_load_lines | awk -F'\t' '$2 ~ /^2/ && $4 != "" {print $4}' | sort -u |
    typeid_uuid | sort >"$WORK/acked.txt"
  acked=$(wc -l <"$WORK/acked.txt")
  missing=unknown
  if psql_admin -c "SELECT id FROM palisade.records" >"$WORK/present.raw"; then
    sort "$WORK/present.raw" >"$WORK/present.txt"
    missing=$(comm -23 "$WORK/acked.txt" "$WORK/present.txt" | wc -l)
  fi
  rel_check "$label: every acknowledged write is present ($acked acknowledged, $missing missing)" \
    test "$missing" = 0 -a "$acked" -gt 0
  # A few through the API too (the read path works and the data decrypts).
  local rid sample_bad=0
  for rid in $(crash_load_lines | awk -F'\t' '$2 ~ /^2/ && $4 != "" {print $4}' | tail -5); do
    local rorg
    rorg=$(crash_load_lines -H | awk -F'\t' -v id="$rid" '$5 == id {print $1; exit}')
    curl -sf "$B/api/v1/orgs/$rorg/collections/$COLLECTION/records/$rid" -H "authorization: Bearer $TOKEN" |
      jq -e --arg id "$rid" '.id == $id' >/dev/null || sample_bad=$((sample_bad + 1))
  done
  rel_check "$label: the last acknowledged records read back through the API" test "$sample_bad" = 0
  unaudited=$(psql_admin -c "SELECT count(*) FROM palisade.records r WHERE NOT EXISTS (SELECT 1 FROM palisade.audit_events e
    WHERE e.tenant_id = r.tenant_id AND e.target_id = r.id AND e.action = 'record.created')")
  rel_check "$label: every record has its record.created audit event ($unaudited without)" test "$unaudited" = 0
  orphans=$(psql_admin -c "SELECT count(*) FROM palisade.audit_events e WHERE e.action = 'record.created'
    AND NOT EXISTS (SELECT 1 FROM palisade.records r WHERE r.tenant_id = e.tenant_id AND r.id = e.target_id)")
  rel_check "$label: no record.created audit event without its record ($orphans orphans)" test "$orphans" = 0
  for org in "${ORGS[@]}"; do
    verdict=$(curl -s "$B/api/v1/orgs/$org/audit-events/verify" -H "authorization: Bearer $TOKEN")
    if jq -e '.valid == true and .events > 0' <<<"$verdict" >/dev/null; then
      verified=$((verified + 1))
    else
      bad=$((bad + 1)); echo "    verify $org: $verdict"
    fi
  done
  rel_check "$label: every organization's audit chain verifies ($verified of ${#ORGS[@]})" test "$bad" = 0
  out=$(crash_amcheck 2>&1); local rc=$?
  [ -n "$out" ] && echo "$out" | head -20
  rel_check "$label: pg_amcheck --heapallindexed --parent-check on the palisade database reports nothing" \
    test "$rc" = 0 -a -z "$out"
}

crash_amcheck() {
  PGOPTIONS='-c client_min_messages=warning' PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" "$PG_BIN/pg_amcheck" --host "$PGHOST" --port "$PGPORT" \
    --database palisade --install-missing --heapallindexed --parent-check 2>&1
}
