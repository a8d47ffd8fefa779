-- Accounts get the wall sessions got in 0036: what proves or replaces who a user is can no
-- longer be written, or password hashes read, by SQL injected into a request's connection.
--
-- Until now the runtime role could
--   * read every account's password hash (offline cracking) and set any account's hash to one
--     of its choosing, then sign in as that account through the API;
--   * insert accounts, `is_instance_admin` included;
--   * insert email tokens (reset, verification, change of address) and sign-in challenges for
--     any account, whose hashes it chose: `enter_reset`, `change_email`, `enter_mfa_challenge`
--     and their siblings then sealed that account as the caller (`app.user_id`);
--   * enter a sign-in challenge it was handed: a passwordless sign-in hands anyone a challenge
--     for any address with a passkey, and `enter_webauthn_challenge` sealed the challenge's
--     account as the caller before any factor was checked.
-- From here on only members of palisade_signin (the `<runtime role>_signin` login, whose pool
-- runs only the sign-in and account-creation paths) may read or replace a password hash, create
-- an account, mint an email token or a challenge, or enter and complete a challenge. The
-- runtime role sets the password of the account it has verified, and no other, through
-- set_own_password, which also wants proof of the account: a session, or a reset link consumed
-- in the same transaction. grants.sql no longer gives the runtime role (nor, through it, the two
-- other logins) any of the above.

GRANT SELECT (password_hash), UPDATE (password_hash) ON palisade.users TO palisade_signin;
GRANT INSERT (id, email, name, password_hash, created_at, updated_at) ON palisade.users TO palisade_signin;
GRANT INSERT ON palisade.email_tokens, palisade.mfa_challenges TO palisade_signin;
GRANT EXECUTE ON FUNCTION palisade.enter_mfa_challenge(bytea, timestamptz, integer, float8),
    palisade.complete_mfa(bytea, timestamptz, bigint, text),
    palisade.enter_webauthn_challenge(bytea, timestamptz, integer, float8),
    palisade.complete_webauthn(bytea, timestamptz, bytea, bytea) TO palisade_signin;

-- Whether this transaction proved who its caller is: a session (enter_session), or a reset link
-- of the caller's consumed in this very transaction (enter_reset marks it used; the row's xmin
-- is then this transaction's id). A sealed app.user_id alone is not enough: other entry points
-- set it too (an email-verification link, a change of address).
CREATE FUNCTION palisade.caller_proved_account() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
BEGIN
    RETURN palisade.current_session_id() IS NOT NULL
        OR EXISTS (SELECT 1 FROM palisade.email_tokens t
                    WHERE t.user_id = palisade.current_user_id() AND t.purpose = 'reset_password'
                      AND t.used_at IS NOT NULL AND t.xmin = xid(pg_current_xact_id()));
END
$$;
REVOKE ALL ON FUNCTION palisade.caller_proved_account() FROM PUBLIC;
-- A new password for the verified caller (a session, or a reset link consumed in this
-- transaction by enter_reset): PA401 without one, as `palisade.setting` raises for a forged one.
CREATE FUNCTION palisade.set_own_password(p_hash text, p_now timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
DECLARE
    v_user uuid := palisade.current_user_id();
BEGIN
    IF v_user IS NULL OR NOT palisade.caller_proved_account() THEN
        RAISE EXCEPTION 'no verified caller to set a password for' USING ERRCODE = 'PA401';
    END IF;
    UPDATE palisade.users SET password_hash = p_hash, updated_at = p_now WHERE id = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the caller has no account' USING ERRCODE = 'PA404';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION palisade.set_own_password(text, timestamptz) FROM PUBLIC;

-- How many accounts use which kind of password hash (`controls check` A1), without the hashes.
-- No parameter: a prefix given by the caller would let it read any hash a character at a time.
CREATE FUNCTION palisade.password_hash_census()
    RETURNS TABLE (current_argon2id bigint, bcrypt bigint, other bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
    SELECT count(*) FILTER (WHERE u.password_hash LIKE '$argon2id$v=19$m=19456,t=2,p=1$%'),
           count(*) FILTER (WHERE u.password_hash ~ '^\$2[aby]\$'),
           count(*) FILTER (WHERE u.password_hash NOT LIKE '$argon2id$%' AND u.password_hash !~ '^\$2[aby]\$')
      FROM palisade.users u
$$;
REVOKE ALL ON FUNCTION palisade.password_hash_census() FROM PUBLIC;
