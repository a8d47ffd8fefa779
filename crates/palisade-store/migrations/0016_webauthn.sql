-- WebAuthn (security keys and passkeys): a user's named credentials, used as a second factor or
-- for passwordless sign-in. A credential is public data (credential id, public key, counter),
-- stored as webauthn-rs's Passkey JSON; it belongs to its user, like the TOTP factor.

CREATE TABLE palisade.webauthn_credentials (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    credential_id bytea NOT NULL UNIQUE,
    passkey       jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    UNIQUE (user_id, name)
);
ALTER TABLE palisade.webauthn_credentials ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_credentials ON palisade.webauthn_credentials
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid)
    WITH CHECK (user_id = nullif(current_setting('app.user_id', true), '')::uuid);

-- A sign-in challenge may carry a WebAuthn ceremony (its webauthn-rs state, which holds the
-- allowed credentials and the random challenge), and says what it completes: the second step
-- after a password, a passwordless sign-in, or a step-up of a signed-in user.
ALTER TABLE palisade.mfa_challenges
    ADD COLUMN webauthn_state jsonb,
    ADD COLUMN purpose text NOT NULL DEFAULT 'second_factor'
        CHECK (purpose IN ('second_factor', 'passwordless', 'step_up'));

-- Whether a user has any second factor (a confirmed TOTP factor or a WebAuthn credential).
CREATE FUNCTION palisade.has_second_factor(p_user uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = p_user AND f.confirmed_at IS NOT NULL)
        OR EXISTS (SELECT 1 FROM palisade.webauthn_credentials w WHERE w.user_id = p_user)
$$;

-- The second factors of the account with this address: {totp, webauthn}, either, or none.
CREATE FUNCTION palisade.second_factors(p_email text) RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = u.id AND f.confirmed_at IS NOT NULL)
             THEN 'totp' END,
        CASE WHEN EXISTS (SELECT 1 FROM palisade.webauthn_credentials w WHERE w.user_id = u.id) THEN 'webauthn' END
    ], NULL)
      FROM palisade.users u WHERE u.email = p_email
$$;

-- The WebAuthn credentials (public keys) of the account with this address, to build the options
-- of a sign-in ceremony. Nothing here is secret; the options are only shown after the password
-- step, or for a passwordless sign-in (where unknown addresses get a decoy).
CREATE FUNCTION palisade.passkeys_for_email(p_email text) RETURNS TABLE (user_id uuid, passkey jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT w.user_id, w.passkey FROM palisade.webauthn_credentials w JOIN palisade.users u ON u.id = w.user_id
     WHERE u.email = p_email ORDER BY w.created_at
$$;

-- Counts a try of a WebAuthn challenge and reserves a sign-in attempt against the lockout
-- (exactly like enter_mfa_challenge for codes), returning the ceremony's state.
CREATE FUNCTION palisade.enter_webauthn_challenge(p_token_hash bytea, p_now timestamptz, p_threshold integer,
                                                  p_lock_seconds float8)
    RETURNS TABLE (user_id uuid, email text, webauthn_state jsonb, purpose text, reserved boolean, locks_now boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_reserved boolean := false;
    v_locks boolean := false;
BEGIN
    UPDATE palisade.mfa_challenges c SET attempts = c.attempts + 1
     WHERE c.token_hash = p_token_hash AND c.used_at IS NULL AND c.expires_at > p_now AND c.attempts < 5
       AND c.webauthn_state IS NOT NULL
    RETURNING c.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired sign-in challenge' USING ERRCODE = 'PA410';
    END IF;
    UPDATE palisade.users u SET
        failed_logins = (CASE WHEN u.locked_until <= p_now THEN 0 ELSE u.failed_logins END) + 1,
        locked_until = CASE WHEN (CASE WHEN u.locked_until <= p_now THEN 0 ELSE u.failed_logins END) + 1 >= p_threshold
                            THEN p_now + make_interval(secs => p_lock_seconds) END
     WHERE u.id = v_user AND (u.locked_until IS NULL OR u.locked_until <= p_now)
    RETURNING true, u.locked_until IS NOT NULL INTO v_reserved, v_locks;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN QUERY SELECT u.id, u.email, c.webauthn_state, c.purpose, coalesce(v_reserved, false), coalesce(v_locks, false)
                   FROM palisade.users u JOIN palisade.mfa_challenges c ON c.user_id = u.id
                  WHERE u.id = v_user AND c.token_hash = p_token_hash;
END
$$;

-- Completes a WebAuthn challenge: uses it once, stores the credential's new state (its counter)
-- and clears the lockout. The credential must belong to the challenge's user (PA401 otherwise).
CREATE FUNCTION palisade.complete_webauthn(p_token_hash bytea, p_now timestamptz, p_credential_id bytea,
                                           p_passkey jsonb)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE palisade.mfa_challenges c SET used_at = p_now
     WHERE c.token_hash = p_token_hash AND c.used_at IS NULL AND c.expires_at > p_now
    RETURNING c.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired sign-in challenge' USING ERRCODE = 'PA410';
    END IF;
    UPDATE palisade.webauthn_credentials w SET passkey = p_passkey, last_used_at = p_now
     WHERE w.user_id = v_user AND w.credential_id = p_credential_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a credential of this account' USING ERRCODE = 'PA401';
    END IF;
    UPDATE palisade.users SET failed_logins = 0, locked_until = NULL WHERE id = v_user;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

-- Every check of "has a second factor" now counts WebAuthn credentials too.
CREATE OR REPLACE FUNCTION palisade.mfa_enabled_for(p_email text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT coalesce((SELECT palisade.has_second_factor(u.id) FROM palisade.users u WHERE u.email = p_email), false)
$$;

CREATE OR REPLACE FUNCTION palisade.require_own_mfa() RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF NOT palisade.has_second_factor(palisade.current_user_id()) THEN
        RAISE EXCEPTION 'set up two-factor authentication first' USING ERRCODE = 'PAMF1';
    END IF;
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
    v_permissions := palisade.set_role_context(m.role, m.custom_role_id);
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

CREATE OR REPLACE FUNCTION palisade.access_review()
    RETURNS TABLE (user_id uuid, email text, name text, role text, custom_role_id uuid, custom_role text,
                   permissions text, mfa boolean, last_active_at timestamptz, joined_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    PERFORM palisade.require_permission('members.manage');
    RETURN QUERY
    SELECT m.user_id, u.email, u.name, m.role, m.custom_role_id, cr.name,
           CASE WHEN m.custom_role_id IS NULL
                THEN (SELECT string_agg(rp.permission, ',' ORDER BY rp.permission) FROM palisade.role_permissions rp WHERE rp.role = m.role)
                ELSE (SELECT string_agg(p, ',' ORDER BY p) FROM unnest(cr.permissions) p) END,
           palisade.has_second_factor(m.user_id),
           (SELECT max(s.last_seen_at) FROM palisade.sessions s WHERE s.user_id = m.user_id),
           m.created_at
      FROM palisade.memberships m
      JOIN palisade.users u ON u.id = m.user_id
      LEFT JOIN palisade.custom_roles cr ON cr.tenant_id = m.tenant_id AND cr.id = m.custom_role_id
     WHERE m.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
     ORDER BY u.email;
END
$$;
