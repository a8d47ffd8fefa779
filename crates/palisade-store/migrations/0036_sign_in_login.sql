-- Sessions are opened by a login of their own (#4), as the key jobs got theirs in 0025.
--
-- Every factor is verified in the server, not in PostgreSQL (argon2id hashes, TOTP codes under
-- sealed seeds, WebAuthn signatures), so the database cannot tell a real sign-in from a forged
-- one. Until now the runtime role could insert sessions (policy sign_in_creates) and first
-- refresh tokens: SQL injected into any request's connection could open a session for any user
-- with a token of its choosing, enter that user's organizations and read them. From here on
-- only members of palisade_signin may insert either: the `<runtime role>_signin` login that
-- `palisade migrate` creates (migrate.rs), which the server uses only for the transactions that
-- complete a sign-in (password, second factor, WebAuthn) through a small pool of its own. The
-- runtime role keeps reading its own sessions, revoking them and rotating refresh tokens
-- (rotate_refresh, SECURITY DEFINER); grants.sql no longer gives it INSERT on either table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_signin') THEN
        CREATE ROLE palisade_signin NOLOGIN;
    END IF;
    -- The migrating role grants the membership to the `_signin` login (migrate.rs).
    IF NOT pg_has_role(current_user, 'palisade_signin', 'MEMBER') THEN
        EXECUTE format('GRANT palisade_signin TO %I WITH ADMIN OPTION', current_user);
    END IF;
END
$$;

DROP POLICY sign_in_creates ON palisade.sessions;
CREATE POLICY sign_in_creates ON palisade.sessions FOR INSERT TO palisade_signin WITH CHECK (true);
GRANT INSERT ON palisade.sessions, palisade.refresh_tokens TO palisade_signin;
