#!/usr/bin/env bash
# Load held (issue #10, item 9): measure the server's capacity for a mix of reads, writes and
# sign-ins (reliability/load.lua), then hold 80 % of it — quick: 20 s, full: 5 minutes — and
# check that no answer was an error and that the server's memory stayed flat (RSS at the start
# and the end of the held load, sampled every 0.2 s in between).
# Rate limits are off: one loopback client would be throttled (the limits have their own tests).
cd "$(dirname "$0")/../.."
source reliability/lib.sh
rel_begin load
trap rel_cleanup EXIT

if [ "$REL_MODE" = full ]; then CAP_S=10; CAL_S=5; HOLD_S=300; else CAP_S=5; CAL_S=3; HOLD_S=20; fi
THREADS=2; CONNS=8 # capacity is measured with 8 connections; the paced load uses 32 so that
# whole-millisecond delays between requests can set its rate finely
PACED_CONNS=32
command -v wrk >/dev/null || { rel_not_run load "wrk is not installed (apt-get install wrk)"; exit 0; }

start_palisade "$(rel_port)"
rel_track "$SERVER_PID"
embedded_pg_env
TOKEN=$(rel_user owner@example.com) || { rel_case fail "set-up: owner signs up and in"; rel_result; exit 0; }
for i in $(seq 0 15); do
  curl -sf "$B/api/v1/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"load$i@example.com\",\"password\":\"$REL_PASSWORD\",\"name\":\"Load $i\"}" >/dev/null
done
psql_admin -c "UPDATE palisade.users SET email_verified_at = now()" >/dev/null
ORG=$(rel_api POST /api/v1/orgs "$TOKEN" '{"name":"Load Org"}' | jq -r .id)
SCHEMA='{"type":"object","properties":{"title":{"type":"string"},"status":{"type":"string","enum":["open","done"]},"hours":{"type":"number"}},"required":["title","status"]}'
rel_api POST "/api/v1/orgs/$ORG/collections" "$TOKEN" "{\"name\":\"work_orders\",\"schema\":$SCHEMA}" >/dev/null
IDS=""
for i in $(seq 1 50); do
  IDS+="$(rel_api POST "/api/v1/orgs/$ORG/collections/work_orders/records" "$TOKEN" \
    "{\"data\":{\"title\":\"seed $i\",\"status\":\"open\"}}" | jq -r .id) "
done
export REL_ORG=$ORG REL_TOKEN=$TOKEN REL_RECORD_IDS=$IDS

# wrk_errors FILE: the number of answers that were not 2xx plus socket errors.
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ {n += $NF}
       /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i + 0}
       END {print n + 0}' "$1"
}
run_wrk() { # SECONDS DELAY_MS OUT [CONNECTIONS]
  REL_DELAY_MS=$2 wrk -t "$THREADS" -c "${4:-$CONNS}" -d "${1}s" --latency -s reliability/load.lua "$B" >"$3" 2>&1
}

echo "==> capacity: the mix flat out (wrk, $CONNS connections, ${CAP_S}s)"
run_wrk 2 0 "$WORK/warm.txt"
run_wrk "$CAP_S" 0 "$WORK/capacity.txt"
read -r CAP CAP_P50 CAP_P99 < <(wrk_stats "$WORK/capacity.txt")
rel_note "capacity: $CAP requests/s (p50 ${CAP_P50} ms, p99 ${CAP_P99} ms; 1 in 20 a sign-in, 1 in 4 a create)"
rel_check "no error answers at capacity ($(wrk_errors "$WORK/capacity.txt") errors)" test "$(wrk_errors "$WORK/capacity.txt")" = 0

# Pace to 80 %: each connection waits between requests. Two calibration steps correct for the
# time the requests themselves take.
TARGET=$(awk -v c="$CAP" 'BEGIN {printf "%.1f", c * 0.8}')
DELAY=$(awk -v t="$TARGET" -v n="$PACED_CONNS" -v l="$CAP_P50" 'BEGIN {d = n * 1000 / t - l; printf "%d", (d < 0 ? 0 : d)}')
for step in 1 2; do
  run_wrk "$CAL_S" "$DELAY" "$WORK/calibrate.txt" "$PACED_CONNS"
  read -r GOT _ _ < <(wrk_stats "$WORK/calibrate.txt")
  echo "==> calibration $step: $DELAY ms between requests per connection gave $GOT requests/s (target $TARGET)"
  DELAY=$(awk -v d="$DELAY" -v t="$TARGET" -v g="$GOT" -v n="$PACED_CONNS" \
    'BEGIN {d = d + n * 1000 / t - n * 1000 / g; printf "%d", (d < 0 ? 0 : d + 0.5)}')
done
echo "==> holding ~$TARGET requests/s (80 %) for ${HOLD_S}s: $DELAY ms between requests per connection"

: >"$WORK/rss.txt"
rss_sampler "$SERVER_PID" "$WORK/rss.txt" &
rel_track $!
run_wrk "$HOLD_S" "$DELAY" "$WORK/hold.txt" "$PACED_CONNS"
read -r HELD HELD_P50 HELD_P99 < <(wrk_stats "$WORK/hold.txt")
ERRORS=$(wrk_errors "$WORK/hold.txt")
TOTAL=$(awk '/requests in/ {print $1}' "$WORK/hold.txt")
SHARE=$(awk -v h="$HELD" -v c="$CAP" 'BEGIN {printf "%.2f", h / c}')
rel_note "held: $HELD requests/s = $SHARE of capacity for ${HOLD_S}s, $TOTAL requests (p50 ${HELD_P50} ms, p99 ${HELD_P99} ms)"
rel_check "no error answers under held load ($ERRORS of $TOTAL)" test "$ERRORS" = 0
rel_check "the held load was 70–90 % of capacity (got $SHARE)" awk -v s="$SHARE" 'BEGIN {exit !(s >= 0.70 && s <= 0.90)}'

# Memory: the first second of samples is the start, the last second the end.
RSS_START=$(head -5 "$WORK/rss.txt" | sort -g | tail -1)
RSS_END=$(tail -5 "$WORK/rss.txt" | sort -g | tail -1)
RSS_MAX=$(sort -g "$WORK/rss.txt" | tail -1)
rel_note "server RSS: start $RSS_START MiB, end $RSS_END MiB, peak $RSS_MAX MiB ($(wc -l <"$WORK/rss.txt") samples)"
# Flat = the end is within 10 % (or 8 MiB, whichever is larger) of the start.
rel_check "memory flat: RSS $RSS_START → $RSS_END MiB" \
  awk -v s="$RSS_START" -v e="$RSS_END" 'BEGIN {m = s * 0.10; if (m < 8) m = 8; exit !(e <= s + m)}'
rel_check "server still running and ready" curl -sf "$B/readyz" -o /dev/null
rel_check "no panic in the server log" bash -c "! grep -qi panic '$WORK/server.log'"
rel_result
