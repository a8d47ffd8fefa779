-- An access token's session is proven to the database with a MAC, not named by its id (#4).
--
-- Until now a bearer access token reached the database as its session id (16 bytes): the node
-- had checked the token's signature, and valid_session believed any id it was given. Session ids
-- are random and a user sees only their own sessions, but audit events name sessions as their
-- targets, and an organization's audit log is readable in that organization: SQL injected into
-- a request's connection that learned another member's session id could enter as that member,
-- in every organization they belong to. From here on the proof is 48 bytes: the session id and
-- HMAC-SHA-256(bearer key, session id). The bearer key lives here, readable by the migrating
-- role and by the sign-in login (palisade_signin, 0036), which hands it to the server at start;
-- the runtime role can neither read it nor compute a proof for a session it merely knows the id
-- of. A bare 16-byte id is refused. Cookie proofs (the SHA-256 of an opaque token) are unchanged.
-- The comparison is of the SHA-256 digests of both MACs, so its timing says nothing about how
-- many leading bytes of a guess were right.
DO $$
DECLARE
    v_schema text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';

    CREATE TABLE palisade.bearer_key (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        key bytea NOT NULL CHECK (length(key) = 32)
    );
    EXECUTE format('INSERT INTO palisade.bearer_key (key) VALUES (%I.gen_random_bytes(32))', v_schema);

    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION palisade.valid_session(p_token_hash bytea, p_now timestamptz) RETURNS palisade.sessions
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
            AS $body$
        DECLARE
            s palisade.sessions%%ROWTYPE;
            v_ends timestamptz;
            v_key bytea;
        BEGIN
            IF length(p_token_hash) = 48 THEN
                SELECT k.key INTO STRICT v_key FROM palisade.bearer_key k;
                IF sha256(%I.hmac(substring(p_token_hash FROM 1 FOR 16), v_key, 'sha256'))
                   IS DISTINCT FROM sha256(substring(p_token_hash FROM 17)) THEN
                    RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
                END IF;
                SELECT * INTO s FROM palisade.sessions WHERE id = encode(substring(p_token_hash FROM 1 FOR 16), 'hex')::uuid;
                v_ends := coalesce(s.refresh_expires_at, s.expires_at);
            ELSIF length(p_token_hash) = 32 THEN
                SELECT * INTO s FROM palisade.sessions WHERE token_hash = p_token_hash;
                v_ends := s.expires_at;
            END IF;
            IF s.id IS NULL OR s.revoked_at IS NOT NULL OR v_ends <= p_now OR s.last_seen_at + s.idle_timeout <= p_now THEN
                RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
            END IF;
            RETURN s;
        END
        $body$
    $f$, v_schema);
END
$$;
REVOKE ALL ON palisade.bearer_key FROM PUBLIC;
GRANT SELECT ON palisade.bearer_key TO palisade_signin;
