-- Scoped API keys (`pal_<env>_…`): owned by an organization, stored only as a keyed hash (HMAC
-- with a key derived from the instance key, so a database dump alone cannot test guesses), with
-- scopes that are a subset of their creator's permissions and never more than the creator's
-- current role, an optional expiry and an optional IP allow-list.
CREATE TABLE palisade.api_keys (
    tenant_id    uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The first characters of the key, shown in lists so people can tell keys apart.
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    permissions  text[] NOT NULL,
    -- NULL: usable from any address.
    allowed_ips  cidr[],
    created_by   uuid NOT NULL REFERENCES palisade.users (id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    last_used_ip inet,
    revoked_at   timestamptz,
    -- Set on the successor when a key is rotated.
    rotated_from uuid,
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE palisade.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.api_keys
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
-- enter_tenant_key finds a presented key before any tenant is set: only the one row whose hash
-- it was given (knowing a hash needs the key and the instance key).
CREATE POLICY presented_key ON palisade.api_keys FOR SELECT
    USING (secret_hash = decode(nullif(current_setting('app.api_key_hash', true), ''), 'hex'));

CREATE FUNCTION palisade.current_api_key_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.api_key_id', true), '')::uuid $$;

-- Enters organization p_org for the API key whose keyed hash is p_key_hash, called from p_ip.
-- Raises PA401 for an unknown, revoked or expired key, or one whose creator has left; PA404 for
-- a key of another organization (as for a non-member); PAIP1 outside the key's allow-list.
-- The permissions loaded are the key's scopes cut down to what its creator holds now, so a
-- demoted creator's keys lose power on the next request.
CREATE FUNCTION palisade.enter_tenant_key(p_key_hash bytea, p_now timestamptz, p_org uuid, p_ip inet) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    k palisade.api_keys%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_held text;
    v_permissions text;
BEGIN
    PERFORM set_config('app.api_key_hash', encode(p_key_hash, 'hex'), true);
    SELECT * INTO k FROM palisade.api_keys WHERE secret_hash = p_key_hash;
    PERFORM set_config('app.api_key_hash', '', true);
    IF k.id IS NULL OR k.revoked_at IS NOT NULL OR coalesce(k.expires_at <= p_now, false) THEN
        RAISE EXCEPTION 'API key is not valid' USING ERRCODE = 'PA401';
    END IF;
    IF k.tenant_id <> p_org THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF k.allowed_ips IS NOT NULL AND (p_ip IS NULL OR NOT p_ip <<= ANY (k.allowed_ips)) THEN
        RAISE EXCEPTION 'API key is not allowed from this address' USING ERRCODE = 'PAIP1';
    END IF;
    PERFORM set_config('app.user_id', k.created_by::text, true);
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = k.created_by;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the API key''s creator is no longer a member' USING ERRCODE = 'PA401';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    v_held := palisade.set_role_context(m.role, m.custom_role_id);
    SELECT ',' || coalesce(string_agg(p, ',' ORDER BY p), '') || ','
      INTO v_permissions FROM unnest(k.permissions) p WHERE position(',' || p || ',' IN v_held) > 0;
    PERFORM set_config('app.permissions', v_permissions, true);
    PERFORM set_config('app.record_scope',
                       CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END, true);
    PERFORM set_config('app.api_key_id', k.id::text, true);
    -- Last use, at most once a minute per key and address (a write per request would serialise
    -- a busy key's requests on its row).
    IF k.last_used_at IS NULL OR k.last_used_at < p_now - interval '1 minute' OR k.last_used_ip IS DISTINCT FROM p_ip THEN
        UPDATE palisade.api_keys SET last_used_at = p_now, last_used_ip = p_ip WHERE tenant_id = p_org AND id = k.id;
    END IF;
    RETURN m.role;
END
$$;

-- Step-up never succeeds for an API key: it has no session (require_recent_auth reads the
-- session), so creating and rotating keys needs a person.
