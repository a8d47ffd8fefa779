-- SECURITY DEFINER functions no longer resolve names in the caller's temporary schema.
--
-- Until now every definer function pinned `search_path = pg_catalog, palisade` (settings_mac
-- none at all). PostgreSQL searches the session's temporary schema *first* for relation and
-- type names unless the path lists `pg_temp` explicitly, and every role may create temporary
-- objects by default (TEMPORARY is granted to PUBLIC on a new database). So SQL injected into a
-- runtime connection could run
--     CREATE FUNCTION pg_temp.f(pg_catalog.text) RETURNS boolean ... ;
--     CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.f(VALUE));
-- and the next call of any definer function declaring a `text` variable (enter_tenant, setting,
-- ...) ran f with the migrating role's rights: a superuser in the embedded cluster, the schema's
-- owner elsewhere. That undoes every wall the database keeps (row-level security, the sealed
-- caller settings, the audit chain). Two fixes, each enough on its own:
--   * every definer function's path ends with `pg_temp` (searched last, so no temporary object
--     can shadow a catalog or palisade name), settings_mac included, which now pins one too;
--   * the migrating code revokes TEMPORARY on the database from PUBLIC and palisade's logins
--     (migrate.rs: it needs the database's name and the logins' names, and re-asserts it on
--     every run).
-- `catalog::definer_problems` (the isolation tests and `controls check` T2) fails on a definer
-- function without such a path, so a later migration cannot bring the gap back.
DO $$
DECLARE
    fn_row record;
    v_path text;
BEGIN
    FOR fn_row IN
        SELECT p.oid::regprocedure AS signature,
               (SELECT substring(c FROM length('search_path=') + 1)
                  FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%') AS path
          FROM pg_proc p
         WHERE p.pronamespace = 'palisade'::regnamespace
           AND (p.prosecdef OR EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%'))
    LOOP
        v_path := coalesce(fn_row.path, 'pg_catalog, palisade');
        IF v_path !~ '(^|,\s*)pg_temp\s*$' THEN
            EXECUTE format('ALTER FUNCTION %s SET search_path = %s, pg_temp', fn_row.signature, v_path);
        END IF;
    END LOOP;
END
$$;

-- The verifier every policy and permission check calls once per statement: the MAC computed in
-- its own body (as settings_mac computes it) rather than through a second definer call, which
-- now pins a path of its own (a GUC save and restore per call). The two must agree: if they
-- ever do not, every tenant request fails closed (PA401), which every API test would show.
DO $$
DECLARE
    v_schema text;
BEGIN
    -- Where pgcrypto lives (another schema if the database already had it; see 0024).
    SELECT n.nspname INTO STRICT v_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION palisade.setting(p_name text, p_missing_ok boolean) RETURNS text
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
            AS $body$
        DECLARE
            v_settings text := format('%%L,%%L,%%L,%%L,%%L,%%L,%%L,%%L',
                coalesce(current_setting('app.tenant_id', true), ''),
                coalesce(current_setting('app.user_id', true), ''),
                coalesce(current_setting('app.session_id', true), ''),
                coalesce(current_setting('app.role', true), ''),
                coalesce(current_setting('app.permissions', true), ''),
                coalesce(current_setting('app.record_scope', true), ''),
                coalesce(current_setting('app.api_key_id', true), ''),
                coalesce(current_setting('app.api_key_hash', true), ''));
            v_mac text := '';
        BEGIN
            IF v_settings <> $e$'','','','','','','',''$e$ THEN
                v_mac := encode(%I.hmac(convert_to(format('%%s,%%s,%%s', pg_backend_pid(),
                                    extract(epoch FROM transaction_timestamp()), v_settings), 'UTF8'),
                                (SELECT k.key FROM palisade.settings_key k), 'sha256'), 'hex');
            END IF;
            IF coalesce(current_setting('app.mac', true), '') IS DISTINCT FROM v_mac THEN
                RAISE EXCEPTION 'the caller settings were not written by palisade in this transaction'
                    USING ERRCODE = 'PA401';
            END IF;
            RETURN current_setting(p_name, p_missing_ok);
        END
        $body$
    $f$, v_schema);
END
$$;
