-- Signed access tokens and rotating refresh tokens.
--
-- A sign-in is one session with up to three credentials: the browser cookie (an opaque token,
-- found by its hash, valid until expires_at), short-lived access tokens (JWTs naming the session
-- by id; their signature is checked by the node, the session's state here on every request) and
-- a refresh-token family (valid until refresh_expires_at). Revoking the session ends all three.

ALTER TABLE palisade.sessions
    ADD COLUMN refresh_expires_at timestamptz,
    -- Authentication methods of the sign-in (RFC 8176 values), copied into every access token.
    ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';

-- Every refresh token ever issued for a session, by hash. A used one stays, so presenting it
-- again is recognised as reuse (stolen or replayed) rather than as an unknown token.
CREATE TABLE palisade.refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id uuid NOT NULL REFERENCES palisade.sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON palisade.refresh_tokens (session_id);

-- The session behind a caller's proof, if it is valid at p_now; raises PA401 otherwise.
-- A 32-byte proof is the SHA-256 of a session (cookie) token; a 16-byte proof is the session id
-- of an access token whose signature the node verified. Access tokens live as long as the
-- session's refresh family (or, without one, as long as the cookie).
CREATE OR REPLACE FUNCTION palisade.valid_session(p_token_hash bytea, p_now timestamptz) RETURNS palisade.sessions
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    v_ends timestamptz;
BEGIN
    IF length(p_token_hash) = 16 THEN
        SELECT * INTO s FROM palisade.sessions WHERE id = encode(p_token_hash, 'hex')::uuid;
        v_ends := coalesce(s.refresh_expires_at, s.expires_at);
    ELSE
        SELECT * INTO s FROM palisade.sessions WHERE token_hash = p_token_hash;
        v_ends := s.expires_at;
    END IF;
    IF s.id IS NULL OR s.revoked_at IS NOT NULL OR v_ends <= p_now OR s.last_seen_at + s.idle_timeout <= p_now THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    RETURN s;
END
$$;

-- Uses refresh token p_old once and stores its successor p_new. Returns 'rotated' with what the
-- new access token needs. A token that was already used answers 'reused': the session (the whole
-- family, every token and cookie of it) is revoked here and the event session.refresh_reused
-- (p_event and the request's context) is written here, in the same transaction: nobody outside
-- knew whose token it was. Unknown tokens and dead sessions raise PA401.
CREATE FUNCTION palisade.rotate_refresh(p_old bytea, p_new bytea, p_now timestamptz,
                                        p_event uuid, p_ip inet, p_user_agent text, p_request_id text)
    RETURNS TABLE (outcome text, session_id uuid, user_id uuid, email text, auth_time timestamptz, amr text[])
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
BEGIN
    -- The usual case in one statement: use the token and read its session.
    UPDATE palisade.refresh_tokens r SET used_at = p_now
      FROM palisade.sessions ss
     WHERE r.token_hash = p_old AND r.used_at IS NULL AND ss.id = r.session_id
    RETURNING ss.* INTO s;
    IF s.id IS NULL THEN
        SELECT ss.* INTO s FROM palisade.refresh_tokens r JOIN palisade.sessions ss ON ss.id = r.session_id
         WHERE r.token_hash = p_old;
        IF s.id IS NULL OR s.revoked_at IS NOT NULL THEN
            RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = 'PA401';
        END IF;
        UPDATE palisade.sessions ss SET revoked_at = p_now WHERE ss.id = s.id;
        INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind,
                                           target_id, ip, user_agent, request_id, outcome, details)
        VALUES (p_event, NULL, p_now, 'user', s.user_id, 'session.refresh_reused', 'session', s.id,
                p_ip, left(p_user_agent, 512), left(p_request_id, 128), 'success', '{"revoked": "session"}');
        RETURN QUERY SELECT 'reused'::text, s.id, s.user_id, u.email, coalesce(s.authenticated_at, s.created_at), s.amr
                       FROM palisade.users u WHERE u.id = s.user_id;
        RETURN;
    END IF;
    IF s.revoked_at IS NOT NULL OR coalesce(s.refresh_expires_at, s.expires_at) <= p_now
       OR s.last_seen_at + s.idle_timeout <= p_now THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    INSERT INTO palisade.refresh_tokens (token_hash, session_id, issued_at) VALUES (p_new, s.id, p_now);
    -- Activity, at most once a minute (as touch_session does).
    IF s.last_seen_at < p_now - interval '60 seconds' THEN
        UPDATE palisade.sessions ss SET last_seen_at = p_now WHERE ss.id = s.id;
    END IF;
    RETURN QUERY SELECT 'rotated'::text, s.id, s.user_id, NULL::text, coalesce(s.authenticated_at, s.created_at), s.amr;
END
$$;

-- Token signing keys: revocation is immediate and final; a retired key stays published until
-- the tokens it signed have expired.
ALTER TABLE palisade.signing_keys ADD COLUMN revoked_at timestamptz;

-- Makes (p_key_id, …) the active token signing key and retires the others, unless p_only_if_older
-- is given and the active key is younger than that (a scheduled rotation another node already
-- did). Serialised across nodes by an advisory lock. Returns whether the key was added.
CREATE FUNCTION palisade.rotate_token_key(p_key_id text, p_public bytea, p_sealed bytea, p_now timestamptz,
                                          p_only_if_older interval)
    RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('palisade.rotate_token_key'));
    IF EXISTS (SELECT 1 FROM palisade.signing_keys k
                WHERE k.purpose = 'token' AND k.retired_at IS NULL AND k.revoked_at IS NULL
                  AND (p_only_if_older IS NULL OR k.created_at > p_now - p_only_if_older)) THEN
        IF p_only_if_older IS NOT NULL THEN
            RETURN false;
        END IF;
    END IF;
    UPDATE palisade.signing_keys k SET retired_at = p_now
     WHERE k.purpose = 'token' AND k.retired_at IS NULL;
    INSERT INTO palisade.signing_keys (key_id, purpose, algorithm, public_key, sealed_private, created_at)
    VALUES (p_key_id, 'token', 'Ed25519', p_public, p_sealed, p_now);
    PERFORM set_config('app.key_rotated', 'on', true);
    RETURN true;
END
$$;
