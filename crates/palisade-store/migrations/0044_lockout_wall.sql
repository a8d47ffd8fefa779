-- The lockout counters behind the wall (after 0042 and 0043).
--
-- Until now the runtime role could call count_login_attempt, clear_login_attempts and
-- prune_login_attempts directly, with any address, account or time: SQL injected into a
-- request's connection could lock any address for good (a `p_now` of 'infinity'), or clear an
-- account's run of failures before each new guess and so guess its password through the API
-- without ever being locked. From here on counting and pruning are the sign-in login's (its
-- pool checks passwords and runs the hourly pruning), and a run of failures is cleared only by
-- the sign-in login (a successful sign-in) or for the verified caller (a step-up, or a reset
-- link consumed in the same transaction). The second-factor steps still count through
-- enter_mfa_challenge and enter_webauthn_challenge, whose challenges only the sign-in login mints.

REVOKE EXECUTE ON FUNCTION palisade.count_login_attempt(text, timestamptz, integer, float8),
    palisade.prune_login_attempts(timestamptz, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade.count_login_attempt(text, timestamptz, integer, float8),
    palisade.prune_login_attempts(timestamptz, float8), palisade.clear_login_attempts(uuid) TO palisade_signin;

CREATE OR REPLACE FUNCTION palisade.clear_login_attempts(p_user uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
BEGIN
    -- session_user: the login this connection was opened as (current_user is this function's owner).
    IF p_user IS DISTINCT FROM palisade.current_user_id()
       AND NOT pg_has_role(session_user, 'palisade_signin', 'MEMBER') THEN
        RAISE EXCEPTION 'only the sign-in login, or the verified account itself, clears a run of failed sign-ins'
            USING ERRCODE = 'PA401';
    END IF;
    DELETE FROM palisade.login_attempts a
     USING palisade.users u WHERE u.id = p_user AND a.email_digest = sha256(convert_to(u.email, 'UTF8'));
END
$$;
