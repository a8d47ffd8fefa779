-- Session management: per-org inactivity timeout, per-member session cut-off, and sessions
-- visible only to their own user (row-level security on an instance table).

ALTER TABLE palisade.orgs
    ADD COLUMN session_idle_timeout interval
        CHECK (session_idle_timeout BETWEEN interval '5 minutes' AND interval '24 hours');

-- Sessions created before this instant no longer open this organization (an admin's "revoke
-- this member's sessions", or removal followed by re-invitation).
ALTER TABLE palisade.memberships ADD COLUMN sessions_not_before timestamptz;

-- The runtime role sees and changes only the signed-in user's sessions. Not FORCED: the
-- SECURITY DEFINER functions below (owned by the migrating role) look sessions up by token hash.
ALTER TABLE palisade.sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sessions ON palisade.sessions
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY sign_in_creates ON palisade.sessions FOR INSERT WITH CHECK (true);

-- The session behind a token hash, if it is valid at p_now; raises PA401 otherwise. Does not
-- record activity (callers do that once every check has passed).
CREATE FUNCTION palisade.valid_session(p_token_hash bytea, p_now timestamptz) RETURNS palisade.sessions
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
BEGIN
    SELECT * INTO s FROM palisade.sessions WHERE token_hash = p_token_hash;
    IF NOT FOUND OR s.revoked_at IS NOT NULL OR s.expires_at <= p_now
       OR s.last_seen_at + s.idle_timeout <= p_now THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    RETURN s;
END
$$;

CREATE FUNCTION palisade.touch_session(p_session uuid, p_last_seen timestamptz, p_now timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    -- Activity is recorded at most once a minute so reads stay reads.
    IF p_last_seen < p_now - interval '60 seconds' THEN
        UPDATE palisade.sessions SET last_seen_at = p_now WHERE id = p_session;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_session(p_token_hash bytea, p_now timestamptz) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    PERFORM set_config('app.user_id', s.user_id::text, true);
    PERFORM set_config('app.session_id', s.id::text, true);
    RETURN s.user_id;
END
$$;

-- Verifies the session, the membership, the member's session cut-off and the organization's
-- inactivity timeout, then sets the tenant. Raises PA401 (session) or PA404 (not a member).
CREATE OR REPLACE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_idle interval;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    PERFORM set_config('app.user_id', s.user_id::text, true);
    PERFORM set_config('app.session_id', s.id::text, true);
    -- app.user_id is set by now, so the own_memberships policy admits this lookup even for an
    -- owner role that row-level security is forced on.
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = s.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF m.sessions_not_before IS NOT NULL AND s.created_at < m.sessions_not_before THEN
        RAISE EXCEPTION 'session revoked for this organization' USING ERRCODE = 'PA401';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.role', m.role, true);
    SELECT o.session_idle_timeout INTO v_idle FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF v_idle IS NOT NULL AND s.last_seen_at + v_idle <= p_now THEN
        RAISE EXCEPTION 'session idle too long for this organization' USING ERRCODE = 'PA401';
    END IF;
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    RETURN m.role;
END
$$;

-- Fails the transaction unless the caller may manage the member p_user: PA404 when p_user is
-- not a member, PA403 when p_user is an owner and the caller is not.
CREATE FUNCTION palisade.require_outranks(p_user uuid) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_role text;
BEGIN
    SELECT role INTO v_role FROM palisade.memberships
     WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND user_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member not found' USING ERRCODE = 'PA404';
    END IF;
    IF v_role = 'owner' AND current_setting('app.role', true) <> 'owner' THEN
        RAISE EXCEPTION 'only an owner may manage an owner' USING ERRCODE = 'PA403';
    END IF;
END
$$;

-- Fails the transaction (PA404) when a write that must touch a row touched none, so nothing
-- queued behind it (its audit event above all) commits.
CREATE FUNCTION palisade.require_found(p_count bigint) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF p_count = 0 THEN
        RAISE EXCEPTION 'not found' USING ERRCODE = 'PA404';
    END IF;
END
$$;
