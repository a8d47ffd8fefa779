-- Sign-in attempts are counted per email address, for every address, in their own table.
--
-- Until now the lockout counter lived on the account row: a wrong password for a real account
-- wrote that row and an unknown email wrote nothing. The write made the known-email refusal
-- ~0.1 ms slower (reliability/suites/brute_force.sh told them apart over 300 pairs), enough to
-- tell which addresses have accounts. Now both do the same statement against the same table:
-- one upsert keyed by the address's SHA-256, whether or not an account has it. An unknown
-- address can be "locked" too, like a real one; the answer is the same 401 either way.
--
-- Rows are keyed by a digest, not the address: attempts for addresses without an account
-- (typos, guesses) are not kept in the clear. prune_login_attempts removes a run of failures a
-- day after its last failure, once no lock is running.
CREATE TABLE palisade.login_attempts (
    email_digest bytea PRIMARY KEY CHECK (octet_length(email_digest) = 32),
    failed integer NOT NULL CHECK (failed >= 0),
    locked_until timestamptz,
    last_failed_at timestamptz NOT NULL
);

INSERT INTO palisade.login_attempts (email_digest, failed, locked_until, last_failed_at)
SELECT sha256(convert_to(u.email, 'UTF8')), u.failed_logins, u.locked_until, now()
  FROM palisade.users u WHERE u.failed_logins > 0 OR u.locked_until IS NOT NULL;

-- Counts one attempt for the address unless it is locked: NULL when locked (nothing counted,
-- nothing to verify), else whether this attempt sets the lock. A lock that has run out starts
-- a new run. The row lock serializes concurrent attempts, so at most `p_threshold` are counted.
CREATE FUNCTION palisade.count_login_attempt(p_email text, p_now timestamptz, p_threshold integer,
                                             p_lock_seconds float8)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_locks boolean;
BEGIN
    INSERT INTO palisade.login_attempts AS a (email_digest, failed, locked_until, last_failed_at)
    VALUES (sha256(convert_to(p_email, 'UTF8')), 1,
            CASE WHEN 1 >= p_threshold THEN p_now + make_interval(secs => p_lock_seconds) END, p_now)
    ON CONFLICT (email_digest) DO UPDATE SET
        failed = (CASE WHEN a.locked_until <= p_now THEN 0 ELSE a.failed END) + 1,
        locked_until = CASE WHEN (CASE WHEN a.locked_until <= p_now THEN 0 ELSE a.failed END) + 1 >= p_threshold
                            THEN p_now + make_interval(secs => p_lock_seconds) END,
        last_failed_at = p_now
     WHERE a.locked_until IS NULL OR a.locked_until <= p_now
    RETURNING a.locked_until IS NOT NULL INTO v_locks;
    RETURN v_locks;
END
$$;

-- A success (password, second factor, reset) ends the account's run of failures and its lock.
CREATE FUNCTION palisade.clear_login_attempts(p_user uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    DELETE FROM palisade.login_attempts a
     USING palisade.users u WHERE u.id = p_user AND a.email_digest = sha256(convert_to(u.email, 'UTF8'));
END
$$;

-- Forgets runs of failures whose last failure is older than `p_keep` and that hold no running
-- lock; returns how many. (Run hourly by every server node; concurrent runs are harmless.)
CREATE FUNCTION palisade.prune_login_attempts(p_now timestamptz, p_keep_seconds float8) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_removed bigint;
BEGIN
    DELETE FROM palisade.login_attempts a
     WHERE a.last_failed_at < p_now - make_interval(secs => p_keep_seconds)
       AND (a.locked_until IS NULL OR a.locked_until <= p_now);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    RETURN v_removed;
END
$$;

-- The second-factor steps count against the same budget (as in 0006 and 0016, now by address).
CREATE OR REPLACE FUNCTION palisade.enter_mfa_challenge(p_token_hash bytea, p_now timestamptz, p_threshold integer,
                                                        p_lock_seconds float8)
    RETURNS TABLE (user_id uuid, email text, secret_sealed bytea, reserved boolean, locks_now boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_locks boolean;
BEGIN
    UPDATE palisade.mfa_challenges c SET attempts = c.attempts + 1
     WHERE c.token_hash = p_token_hash AND c.used_at IS NULL AND c.expires_at > p_now AND c.attempts < 5
    RETURNING c.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired sign-in challenge' USING ERRCODE = 'PA410';
    END IF;
    SELECT palisade.count_login_attempt(u.email, p_now, p_threshold, p_lock_seconds) INTO v_locks
      FROM palisade.users u WHERE u.id = v_user;
    PERFORM palisade.set_app('app.user_id', v_user::text, true);
    RETURN QUERY SELECT u.id, u.email, f.secret_sealed, v_locks IS NOT NULL, coalesce(v_locks, false)
                   FROM palisade.users u JOIN palisade.totp_factors f ON f.user_id = u.id
                  WHERE u.id = v_user AND f.confirmed_at IS NOT NULL;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_webauthn_challenge(p_token_hash bytea, p_now timestamptz, p_threshold integer,
                                                             p_lock_seconds float8)
    RETURNS TABLE (user_id uuid, email text, webauthn_state jsonb, purpose text, reserved boolean, locks_now boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_locks boolean;
BEGIN
    UPDATE palisade.mfa_challenges c SET attempts = c.attempts + 1
     WHERE c.token_hash = p_token_hash AND c.used_at IS NULL AND c.expires_at > p_now AND c.attempts < 5
       AND c.webauthn_state IS NOT NULL
    RETURNING c.user_id INTO v_user;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired sign-in challenge' USING ERRCODE = 'PA410';
    END IF;
    SELECT palisade.count_login_attempt(u.email, p_now, p_threshold, p_lock_seconds) INTO v_locks
      FROM palisade.users u WHERE u.id = v_user;
    PERFORM palisade.set_app('app.user_id', v_user::text, true);
    RETURN QUERY SELECT u.id, u.email, c.webauthn_state, c.purpose, v_locks IS NOT NULL, coalesce(v_locks, false)
                   FROM palisade.users u JOIN palisade.mfa_challenges c ON c.user_id = u.id
                  WHERE u.id = v_user AND c.token_hash = p_token_hash;
END
$$;

CREATE OR REPLACE FUNCTION palisade.complete_mfa(p_token_hash bytea, p_now timestamptz, p_step bigint, p_backup_lookup text)
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
    PERFORM palisade.clear_login_attempts(v_user);
    PERFORM palisade.set_app('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

CREATE OR REPLACE FUNCTION palisade.complete_webauthn(p_token_hash bytea, p_now timestamptz, p_credential_id bytea,
                                                      p_passkey_sealed bytea)
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
    UPDATE palisade.webauthn_credentials w SET passkey_sealed = p_passkey_sealed, passkey = NULL, last_used_at = p_now
     WHERE w.user_id = v_user AND w.credential_id = p_credential_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a credential of this account' USING ERRCODE = 'PA401';
    END IF;
    PERFORM palisade.clear_login_attempts(v_user);
    PERFORM palisade.set_app('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

ALTER TABLE palisade.users DROP COLUMN failed_logins, DROP COLUMN locked_until;
