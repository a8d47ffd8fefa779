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
    -- quoted literals, so no two different sets of values encode the same; the pid and the
    -- transaction's start time (as epoch seconds: no time-zone setting changes the text) bind it
    -- to this transaction on this connection. PL/pgSQL, not SQL: its plans are cached per
    -- connection (a SQL function that cannot be inlined is planned again on every call: 110 µs
    -- instead of a few). No SET search_path clause (a GUC save and restore on every call): its
    -- callers are set_app, set_apps and setting, which run with search_path pinned to
    -- pg_catalog, palisade, and it names its one table and pgcrypto's schema in full.
    EXECUTE format($f$
        CREATE FUNCTION palisade.settings_mac() RETURNS text
            LANGUAGE plpgsql STABLE SECURITY DEFINER
            AS $body$
        DECLARE
            -- quote_literal form: every value quoted and escaped, so no two sets encode the same.
            v_settings text := format('%%L,%%L,%%L,%%L,%%L,%%L,%%L,%%L',
                coalesce(current_setting('app.tenant_id', true), ''),
                coalesce(current_setting('app.user_id', true), ''),
                coalesce(current_setting('app.session_id', true), ''),
                coalesce(current_setting('app.role', true), ''),
                coalesce(current_setting('app.permissions', true), ''),
                coalesce(current_setting('app.record_scope', true), ''),
                coalesce(current_setting('app.api_key_id', true), ''),
                coalesce(current_setting('app.api_key_hash', true), ''));
            v_key bytea;
        BEGIN
            IF v_settings = $e$'','','','','','','',''$e$ THEN
                RETURN '';
            END IF;
            SELECT k.key INTO STRICT v_key FROM palisade.settings_key k;
            RETURN encode(%I.hmac(convert_to(format('%%s,%%s,%%s', pg_backend_pid(),
                              extract(epoch FROM transaction_timestamp()), v_settings), 'UTF8'),
                          v_key, 'sha256'), 'hex');
        END
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
-- Not SECURITY DEFINER: only the migrating role's SECURITY DEFINER functions and the key keeper
-- may execute it, and they run with search_path pinned.
CREATE FUNCTION palisade.set_app(p_name text, p_value text, p_is_local boolean) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ignored text;
BEGIN
    IF NOT palisade.is_caller_setting(p_name) OR NOT p_is_local THEN
        RAISE EXCEPTION 'set_app writes transaction-local caller settings only (not %)', p_name
            USING ERRCODE = 'PA500';
    END IF;
    v_ignored := set_config(p_name, p_value, true);
    v_ignored := set_config('app.mac', palisade.settings_mac(), true);
    RETURN p_value;
END
$$;
REVOKE ALL ON FUNCTION palisade.set_app(text, text, boolean) FROM PUBLIC;
-- The key keeper's functions enter an organization for their own duration (enter_for_keys).
GRANT EXECUTE ON FUNCTION palisade.set_app(text, text, boolean), palisade.settings_mac(), palisade.is_caller_setting(text)
    TO palisade_keykeeper;

-- Writes several caller settings and seals them once: the sign-in paths of every request
-- (enter_session, enter_tenant, set_role_context, enter_tenant_key, redefined at the end of this
-- file) write two or three at a time, and each seal is an HMAC and a key read.
CREATE FUNCTION palisade.set_apps(p_names text[], p_values text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ignored text;
BEGIN
    IF cardinality(p_names) IS DISTINCT FROM cardinality(p_values) THEN
        RAISE EXCEPTION 'set_apps takes as many values as names' USING ERRCODE = 'PA500';
    END IF;
    FOR i IN 1 .. cardinality(p_names) LOOP
        IF NOT palisade.is_caller_setting(p_names[i]) THEN
            RAISE EXCEPTION 'set_apps writes caller settings only (not %)', p_names[i] USING ERRCODE = 'PA500';
        END IF;
        v_ignored := set_config(p_names[i], p_values[i], true);
    END LOOP;
    v_ignored := set_config('app.mac', palisade.settings_mac(), true);
END
$$;
REVOKE ALL ON FUNCTION palisade.set_apps(text[], text[]) FROM PUBLIC;

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
           AND pr.proname NOT IN ('settings_mac', 'set_app', 'set_apps', 'setting', 'is_caller_setting')
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

-- The per-request entry paths, as the rewrite above left them, but writing the settings they
-- set together with set_apps: two seals per session request instead of six (measured: the
-- GET /orgs transaction at 5,300 tx/s with one seal per setting on 2 cores).
CREATE OR REPLACE FUNCTION palisade.enter_session(p_token_hash bytea, p_now timestamptz) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    PERFORM palisade.set_apps(ARRAY['app.user_id', 'app.session_id'], ARRAY[s.user_id::text, s.id::text]);
    RETURN s.user_id;
END
$$;

CREATE OR REPLACE FUNCTION palisade.set_role_context(p_role text, p_custom_role uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_permissions text;
BEGIN
    IF p_custom_role IS NULL THEN
        SELECT ',' || coalesce(string_agg(rp.permission, ',' ORDER BY rp.permission), '') || ','
          INTO v_permissions FROM palisade.role_permissions rp WHERE rp.role = p_role;
    ELSE
        SELECT ',' || coalesce(string_agg(p, ',' ORDER BY p), '') || ','
          INTO v_permissions
          FROM palisade.custom_roles cr, unnest(cr.permissions) p
         WHERE cr.tenant_id = nullif(palisade.setting('app.tenant_id', true), '')::uuid AND cr.id = p_custom_role
           AND p IN (SELECT rp.permission FROM palisade.role_permissions rp WHERE rp.role = 'owner');
    END IF;
    v_permissions := coalesce(v_permissions, ',,');
    PERFORM palisade.set_apps(ARRAY['app.role', 'app.permissions', 'app.record_scope'],
        ARRAY[p_role, v_permissions,
              CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END]);
    RETURN v_permissions;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_idle interval;
    v_policy text;
    v_permissions text;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    -- The user first: the own_memberships policy admits the lookup below by it.
    PERFORM palisade.set_apps(ARRAY['app.user_id', 'app.session_id'], ARRAY[s.user_id::text, s.id::text]);
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = s.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF m.sessions_not_before IS NOT NULL AND s.created_at < m.sessions_not_before THEN
        RAISE EXCEPTION 'session revoked for this organization' USING ERRCODE = 'PA401';
    END IF;
    IF m.custom_role_id IS NULL THEN
        -- A built-in role: the tenant and its role context sealed at once.
        SELECT ',' || coalesce(string_agg(rp.permission, ',' ORDER BY rp.permission), '') || ','
          INTO v_permissions FROM palisade.role_permissions rp WHERE rp.role = m.role;
        v_permissions := coalesce(v_permissions, ',,');
        PERFORM palisade.set_apps(ARRAY['app.tenant_id', 'app.role', 'app.permissions', 'app.record_scope'],
            ARRAY[p_org::text, m.role, v_permissions,
                  CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END]);
    ELSE
        -- A custom role is read under the tenant's policy: seal the tenant first.
        PERFORM palisade.set_app('app.tenant_id', p_org::text, true);
        v_permissions := palisade.set_role_context(m.role, m.custom_role_id);
    END IF;
    SELECT o.session_idle_timeout, o.mfa_policy INTO v_idle, v_policy FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF v_idle IS NOT NULL AND s.last_seen_at + v_idle <= p_now THEN
        RAISE EXCEPTION 'session idle too long for this organization' USING ERRCODE = 'PA401';
    END IF;
    IF (v_policy = 'all' OR (v_policy = 'admins' AND (m.role IN ('owner', 'admin') OR palisade.is_admin_like(v_permissions))))
       AND NOT palisade.has_second_factor(s.user_id) THEN
        RAISE EXCEPTION 'this organization requires two-factor authentication' USING ERRCODE = 'PAMF1';
    END IF;
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    RETURN m.role;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_tenant_key(p_key_hash bytea, p_now timestamptz, p_org uuid, p_ip inet) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    k palisade.api_keys%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_held text;
    v_permissions text;
BEGIN
    PERFORM palisade.set_app('app.api_key_hash', encode(p_key_hash, 'hex'), true);
    SELECT * INTO k FROM palisade.api_keys WHERE secret_hash = p_key_hash;
    IF k.id IS NULL OR k.revoked_at IS NOT NULL OR coalesce(k.expires_at <= p_now, false) THEN
        RAISE EXCEPTION 'API key is not valid' USING ERRCODE = 'PA401';
    END IF;
    IF k.tenant_id <> p_org THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF k.allowed_ips IS NOT NULL AND (p_ip IS NULL OR NOT p_ip <<= ANY (k.allowed_ips)) THEN
        RAISE EXCEPTION 'API key is not allowed from this address' USING ERRCODE = 'PAIP1';
    END IF;
    PERFORM palisade.set_apps(ARRAY['app.api_key_hash', 'app.user_id'], ARRAY['', k.created_by::text]);
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = k.created_by;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the API key''s creator is no longer a member' USING ERRCODE = 'PA401';
    END IF;
    PERFORM palisade.set_app('app.tenant_id', p_org::text, true);
    v_held := palisade.set_role_context(m.role, m.custom_role_id);
    SELECT ',' || coalesce(string_agg(p, ',' ORDER BY p), '') || ','
      INTO v_permissions FROM unnest(k.permissions) p WHERE position(',' || p || ',' IN v_held) > 0;
    PERFORM palisade.set_apps(ARRAY['app.permissions', 'app.record_scope', 'app.api_key_id'],
        ARRAY[v_permissions, CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END,
              k.id::text]);
    -- Last use, at most once a minute per key and address (a write per request would serialise
    -- a busy key's requests on its row).
    IF k.last_used_at IS NULL OR k.last_used_at < p_now - interval '1 minute' OR k.last_used_ip IS DISTINCT FROM p_ip THEN
        UPDATE palisade.api_keys SET last_used_at = p_now, last_used_ip = p_ip WHERE tenant_id = p_org AND id = k.id;
    END IF;
    RETURN m.role;
END
$$;
