-- Email flows: verification after sign-up and password reset. Tokens are 256-bit random values
-- sent by email and stored only as SHA-256; they are checked and consumed inside the database.

ALTER TABLE palisade.users ADD COLUMN email_verified_at timestamptz;

CREATE TABLE palisade.email_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    -- The address the link was sent to: verifying proves control of exactly this address.
    email      text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_user_idx ON palisade.email_tokens (user_id);

-- Consumes a verification token and marks the address verified. Raises PA410 when the token is
-- unknown, used, expired, or for an address the account no longer has.
CREATE FUNCTION palisade.verify_email(p_token_hash bytea, p_now timestamptz) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE palisade.email_tokens t SET used_at = p_now
      FROM palisade.users u
     WHERE t.token_hash = p_token_hash AND t.purpose = 'verify_email' AND t.used_at IS NULL
       AND t.expires_at > p_now AND u.id = t.user_id AND u.email = t.email
    RETURNING t.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired token' USING ERRCODE = 'PA410';
    END IF;
    UPDATE palisade.users SET email_verified_at = coalesce(email_verified_at, p_now) WHERE id = v_user;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

-- Consumes a password-reset token and acts as its user for the rest of the transaction (which
-- sets the new password and revokes every session). Raises PA410 when the token is not valid.
CREATE FUNCTION palisade.enter_reset(p_token_hash bytea, p_now timestamptz) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE palisade.email_tokens t SET used_at = p_now
      FROM palisade.users u
     WHERE t.token_hash = p_token_hash AND t.purpose = 'reset_password' AND t.used_at IS NULL
       AND t.expires_at > p_now AND u.id = t.user_id AND u.email = t.email
    RETURNING t.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired token' USING ERRCODE = 'PA410';
    END IF;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

-- 'first' (no earlier session), 'known' (an earlier session had this user agent) or 'new'.
CREATE FUNCTION palisade.device_seen(p_user uuid, p_user_agent text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM palisade.sessions s WHERE s.user_id = p_user) THEN 'first'
        WHEN EXISTS (SELECT 1 FROM palisade.sessions s WHERE s.user_id = p_user
                     AND s.user_agent IS NOT DISTINCT FROM p_user_agent) THEN 'known'
        ELSE 'new' END
$$;

-- Creating an organization needs a verified email address (PAEV1).
CREATE OR REPLACE FUNCTION palisade.enter_new_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    v_user := palisade.enter_session(p_token_hash, p_now);
    IF NOT EXISTS (SELECT 1 FROM palisade.users WHERE id = v_user AND email_verified_at IS NOT NULL) THEN
        RAISE EXCEPTION 'verify your email address first' USING ERRCODE = 'PAEV1';
    END IF;
    INSERT INTO palisade.tenants (id, created_at) VALUES (p_org, p_now);
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.role', 'owner', true);
    RETURN v_user;
END
$$;
