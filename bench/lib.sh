# Steps every benchmark script shares (sourced, not run). Needs $BIN and $WORK.

# start_palisade PORT [tls]: the release server on loopback over its own embedded cluster in
# $WORK/data. Sets SERVER_PID and B (the base URL). Plain HTTP unless the second argument is
# `tls` (then its self-signed certificate; curl/wrk do not verify it). Rate limits are off
# unless PALISADE_RATE_LIMITS says otherwise (these scripts measure the work, not the
# throttle); access tokens live 60 minutes so a long run never sees one expire.
start_palisade() {
  local scheme=http flag=--insecure-http
  if [ "${2:-}" = tls ]; then scheme=https; flag=; fi
  echo "==> starting palisade (embedded PostgreSQL) on $scheme://127.0.0.1:$1"
  PALISADE_DATA_DIR="$WORK/data" PALISADE_LOG_LEVEL=warn PALISADE_RATE_LIMITS="${PALISADE_RATE_LIMITS:-off}" \
    PALISADE_ACCESS_TOKEN_MINUTES=60 "$BIN" serve --listen "127.0.0.1:$1" $flag >"$WORK/server.log" 2>&1 &
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
}

psql_admin() { PGUSER=palisade_admin PGPASSWORD="$ADMIN_PW" psql -qAtX -v ON_ERROR_STOP=1 "$@"; }
