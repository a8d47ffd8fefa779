-- Step-up (recent authentication for sensitive actions) and per-organization MFA policy.

-- When the session's user last proved who they are (sign-in or step-up); NULL = created_at.
ALTER TABLE palisade.sessions ADD COLUMN authenticated_at timestamptz;

ALTER TABLE palisade.orgs
    ADD COLUMN mfa_policy text NOT NULL DEFAULT 'off' CHECK (mfa_policy IN ('off', 'admins', 'all'));

-- Fails (PASU1) unless the current session authenticated within the last p_window_seconds.
CREATE FUNCTION palisade.require_recent_auth(p_now timestamptz, p_window_seconds float8) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.sessions s
                    WHERE s.id = palisade.current_session_id()
                      AND coalesce(s.authenticated_at, s.created_at) > p_now - make_interval(secs => p_window_seconds)) THEN
        RAISE EXCEPTION 'authenticate again to do this' USING ERRCODE = 'PASU1';
    END IF;
END
$$;

-- Fails (PAMF1) unless the signed-in user has a confirmed second factor.
CREATE FUNCTION palisade.require_own_mfa() RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.totp_factors f
                    WHERE f.user_id = palisade.current_user_id() AND f.confirmed_at IS NOT NULL) THEN
        RAISE EXCEPTION 'set up two-factor authentication first' USING ERRCODE = 'PAMF1';
    END IF;
END
$$;

-- enter_tenant, now also enforcing the organization's MFA policy (PAMF1 for a member it covers
-- who has no confirmed second factor).
CREATE OR REPLACE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_idle interval;
    v_policy text;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    PERFORM set_config('app.user_id', s.user_id::text, true);
    PERFORM set_config('app.session_id', s.id::text, true);
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = s.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF m.sessions_not_before IS NOT NULL AND s.created_at < m.sessions_not_before THEN
        RAISE EXCEPTION 'session revoked for this organization' USING ERRCODE = 'PA401';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.role', m.role, true);
    SELECT o.session_idle_timeout, o.mfa_policy INTO v_idle, v_policy FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF v_idle IS NOT NULL AND s.last_seen_at + v_idle <= p_now THEN
        RAISE EXCEPTION 'session idle too long for this organization' USING ERRCODE = 'PA401';
    END IF;
    IF (v_policy = 'all' OR (v_policy = 'admins' AND m.role IN ('owner', 'admin')))
       AND NOT EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = s.user_id AND f.confirmed_at IS NOT NULL) THEN
        RAISE EXCEPTION 'this organization requires two-factor authentication' USING ERRCODE = 'PAMF1';
    END IF;
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    RETURN m.role;
END
$$;

-- my_orgs() also returns the MFA policy (a new result column: drop and create).
DROP FUNCTION palisade.my_orgs();
CREATE FUNCTION palisade.my_orgs()
    RETURNS TABLE (tenant_id uuid, name text, created_at timestamptz, updated_at timestamptz, role text,
                   session_idle_seconds float8, mfa_policy text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    m record;
    v_prior text := coalesce(current_setting('app.tenant_id', true), '');
BEGIN
    IF palisade.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    FOR m IN SELECT mm.tenant_id, mm.role FROM palisade.memberships mm
              WHERE mm.user_id = palisade.current_user_id() LOOP
        PERFORM set_config('app.tenant_id', m.tenant_id::text, true);
        RETURN QUERY
            SELECT o.tenant_id, o.name, o.created_at, o.updated_at, m.role,
                   extract(epoch FROM o.session_idle_timeout)::float8, o.mfa_policy
              FROM palisade.orgs o WHERE o.tenant_id = m.tenant_id;
    END LOOP;
    PERFORM set_config('app.tenant_id', v_prior, true);
END
$$;
