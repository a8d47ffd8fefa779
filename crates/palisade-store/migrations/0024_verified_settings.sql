-- Verified caller settings: closes the `set_config` gap. Until now the policies and permission
-- functions trusted `current_setting('app.tenant_id')` and its siblings, which the runtime role
-- can set itself: SQL injected into a runtime connection could name any tenant, user or role.
-- From here on:
--   * palisade.set_app(name, value, true) is the only writer of the caller settings. It is not
--     granted to the runtime role; the enter_* functions (SECURITY DEFINER, owned by the
--     migrating role) and the key keeper call it. After each write it stores in `app.mac` an
--     HMAC-SHA-256 (pgcrypto) over every caller setting, the backend's pid and the transaction's
--     start time, keyed by palisade.settings_key, which only the migrating role can read.
--   * palisade.setting(name, missing_ok) is the only reader: it recomputes the HMAC and raises
--     PA401 when the settings are not the ones a palisade function wrote in this transaction
--     (forged, changed afterwards, or carried over from another transaction). With no caller
--     setting at all (anonymous work) there is nothing to verify and it returns the empty value.
--   * Every existing policy and function is rewritten below to use them; policies read the
--     setting in a scalar subquery, so it is verified once per statement, not once per row.
-- `controls check` (T1) and the catalog tests fail if a later migration reads or writes an
-- `app.` caller setting any other way.
DO $$
DECLARE
    v_schema text;
BEGIN
    CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA palisade;
    -- Where pgcrypto lives (another schema if the database already had it).
    SELECT n.nspname INTO v_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';

    CREATE TABLE palisade.settings_key (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        key bytea NOT NULL CHECK (length(key) = 32)
    );
    EXECUTE format('INSERT INTO palisade.settings_key (key) VALUES (%I.gen_random_bytes(32))', v_schema);

    -- The MAC over the caller settings as they are now ('' when none is set). The settings are
    -- put in a JSON array, so no two different sets of values encode the same; the pid and the
    -- transaction's start time (as epoch seconds: no time-zone setting changes the text) bind it
    -- to this transaction on this connection.
    EXECUTE format($f$
        CREATE FUNCTION palisade.settings_mac() RETURNS text
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
            AS $body$
            SELECT CASE WHEN s.settings = '["", "", "", "", "", "", "", ""]'::jsonb THEN ''
                        ELSE encode(%I.hmac(convert_to(jsonb_build_array(pg_backend_pid(),
                                    extract(epoch FROM transaction_timestamp()), s.settings)::text, 'UTF8'),
                                    (SELECT k.key FROM palisade.settings_key k), 'sha256'), 'hex') END
              FROM (SELECT jsonb_build_array(
                        coalesce(current_setting('app.tenant_id', true), ''),
                        coalesce(current_setting('app.user_id', true), ''),
                        coalesce(current_setting('app.session_id', true), ''),
                        coalesce(current_setting('app.role', true), ''),
                        coalesce(current_setting('app.permissions', true), ''),
                        coalesce(current_setting('app.record_scope', true), ''),
                        coalesce(current_setting('app.api_key_id', true), ''),
                        coalesce(current_setting('app.api_key_hash', true), '')) AS settings) s
            $body$
    $f$, v_schema);
END
$$;
REVOKE ALL ON palisade.settings_key FROM PUBLIC;
REVOKE ALL ON FUNCTION palisade.settings_mac() FROM PUBLIC;

-- The caller settings this file covers (the names settings_mac reads).
CREATE FUNCTION palisade.is_caller_setting(p_name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT p_name IN ('app.tenant_id', 'app.user_id', 'app.session_id', 'app.role', 'app.permissions',
                      'app.record_scope', 'app.api_key_id', 'app.api_key_hash')
$$;

-- Writes one caller setting for this transaction and re-seals them all.
CREATE FUNCTION palisade.set_app(p_name text, p_value text, p_is_local boolean) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF NOT palisade.is_caller_setting(p_name) OR NOT p_is_local THEN
        RAISE EXCEPTION 'set_app writes transaction-local caller settings only (not %)', p_name
            USING ERRCODE = 'PA500';
    END IF;
    PERFORM set_config(p_name, p_value, true);
    PERFORM set_config('app.mac', palisade.settings_mac(), true);
    RETURN p_value;
END
$$;
REVOKE ALL ON FUNCTION palisade.set_app(text, text, boolean) FROM PUBLIC;
-- The key keeper's functions enter an organization for their own duration (enter_for_keys).
GRANT EXECUTE ON FUNCTION palisade.set_app(text, text, boolean) TO palisade_keykeeper;

-- Reads one caller setting after checking that palisade's functions wrote the whole set in this
-- transaction. Raises PA401 otherwise: a forged setting ends the statement, never widens it.
CREATE FUNCTION palisade.setting(p_name text, p_missing_ok boolean) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF coalesce(current_setting('app.mac', true), '') IS DISTINCT FROM palisade.settings_mac() THEN
        RAISE EXCEPTION 'the caller settings were not written by palisade in this transaction'
            USING ERRCODE = 'PA401';
    END IF;
    RETURN current_setting(p_name, p_missing_ok);
END
$$;
CREATE FUNCTION palisade.setting(p_name text) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT palisade.setting(p_name, false) $$;
GRANT EXECUTE ON FUNCTION palisade.setting(text, boolean), palisade.setting(text)
    TO palisade_keykeeper, palisade_sealer;

-- Rewrites every function and policy of the schema that reads or writes a caller setting.
DO $$
DECLARE
    fn_row record;
    pol_row record;
    v_def text;
    v_names constant text := '(tenant_id|user_id|session_id|role|permissions|record_scope|api_key_id|api_key_hash)';
BEGIN
    FOR fn_row IN
        SELECT pr.oid FROM pg_proc pr
         WHERE pr.pronamespace = 'palisade'::regnamespace
           AND pr.proname NOT IN ('settings_mac', 'set_app', 'setting', 'is_caller_setting')
           AND pr.prosrc ~ ('(current_setting|set_config)\(''app\.' || v_names || '''')
    LOOP
        v_def := pg_get_functiondef(fn_row.oid);
        v_def := regexp_replace(v_def, '\mset_config\(''app\.' || v_names || '''', 'palisade.set_app(''app.\1''', 'g');
        v_def := regexp_replace(v_def, '\mcurrent_setting\(''app\.' || v_names || '''', 'palisade.setting(''app.\1''', 'g');
        EXECUTE v_def;
    END LOOP;

    FOR pol_row IN
        SELECT pol.polname, c.relname,
               pg_get_expr(pol.polqual, pol.polrelid) AS qual,
               pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check
          FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
         WHERE c.relnamespace = 'palisade'::regnamespace
           AND (coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') ~ 'current_setting\(''app\.'
                OR coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') ~ 'current_setting\(''app\.')
    LOOP
        EXECUTE format('ALTER POLICY %I ON palisade.%I%s%s', pol_row.polname, pol_row.relname,
            CASE WHEN pol_row.qual IS NULL THEN '' ELSE ' USING (' || regexp_replace(pol_row.qual,
                'current_setting\((''app\.' || v_names || '''::text), true\)',
                '(SELECT palisade.setting(\1, true))', 'g') || ')' END,
            CASE WHEN pol_row.with_check IS NULL THEN '' ELSE ' WITH CHECK (' || regexp_replace(pol_row.with_check,
                'current_setting\((''app\.' || v_names || '''::text), true\)',
                '(SELECT palisade.setting(\1, true))', 'g') || ')' END);
    END LOOP;
END
$$;
