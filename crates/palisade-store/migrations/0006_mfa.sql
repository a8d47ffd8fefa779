-- Second factors: TOTP (seed sealed with the instance key, last accepted step for replay
-- protection), single-use backup codes (argon2id), and sign-in challenges between the password
-- and the second factor. Instance tables: a user's factors belong to the user, not to any org.

CREATE TABLE palisade.totp_factors (
    user_id        uuid PRIMARY KEY REFERENCES palisade.users (id) ON DELETE CASCADE,
    secret_sealed  bytea NOT NULL,
    confirmed_at   timestamptz,
    last_used_step bigint,
    created_at     timestamptz NOT NULL
);

CREATE TABLE palisade.backup_codes (
    user_id   uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    -- The code's first group names its row, so a check costs one argon2id verification.
    lookup    text NOT NULL CHECK (lookup ~ '^[a-z0-9]{4}$'),
    code_hash text NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, lookup)
);

CREATE TABLE palisade.mfa_challenges (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_user_idx ON palisade.mfa_challenges (user_id);

-- The runtime role sees and changes only the signed-in user's factors.
ALTER TABLE palisade.totp_factors ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_factor ON palisade.totp_factors
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);
ALTER TABLE palisade.backup_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_codes ON palisade.backup_codes
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);

-- Whether the account behind an email address has a confirmed second factor.
CREATE FUNCTION palisade.mfa_enabled_for(p_email text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT EXISTS (SELECT 1 FROM palisade.totp_factors f JOIN palisade.users u ON u.id = f.user_id
                   WHERE u.email = p_email AND f.confirmed_at IS NOT NULL)
$$;

-- Starts the second-factor step: checks the challenge (unused, unexpired, fewer than 5 tries),
-- counts the try, reserves an attempt against the account's lockout exactly as a password
-- sign-in does, and acts as the challenge's user for the rest of the transaction.
-- Raises PA410 for an unusable challenge. `reserved` is false when the account is locked.
CREATE FUNCTION palisade.enter_mfa_challenge(p_token_hash bytea, p_now timestamptz, p_threshold integer, p_lock_seconds float8)
    RETURNS TABLE (user_id uuid, email text, secret_sealed bytea, reserved boolean, locks_now boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_reserved boolean := false;
    v_locks boolean := false;
BEGIN
    UPDATE palisade.mfa_challenges c SET attempts = c.attempts + 1
     WHERE c.token_hash = p_token_hash AND c.used_at IS NULL AND c.expires_at > p_now AND c.attempts < 5
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
    RETURN QUERY SELECT u.id, u.email, f.secret_sealed, coalesce(v_reserved, false), coalesce(v_locks, false)
                   FROM palisade.users u JOIN palisade.totp_factors f ON f.user_id = u.id
                  WHERE u.id = v_user AND f.confirmed_at IS NOT NULL;
END
$$;

-- Finishes a successful second factor: the challenge is used once, a TOTP step only once
-- (PA409 on replay), a backup code only once; failures are cleared. Raises otherwise, which
-- aborts the session creation queued behind it.
CREATE FUNCTION palisade.complete_mfa(p_token_hash bytea, p_now timestamptz, p_step bigint, p_backup_lookup text)
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
    IF p_step IS NOT NULL THEN
        UPDATE palisade.totp_factors SET last_used_step = p_step
         WHERE user_id = v_user AND (last_used_step IS NULL OR last_used_step < p_step);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'this code was already used' USING ERRCODE = 'PA409';
        END IF;
    ELSE
        UPDATE palisade.backup_codes SET used_at = p_now
         WHERE user_id = v_user AND lookup = p_backup_lookup AND used_at IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'this backup code was already used' USING ERRCODE = 'PA409';
        END IF;
    END IF;
    UPDATE palisade.users SET failed_logins = 0, locked_until = NULL WHERE id = v_user;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;
