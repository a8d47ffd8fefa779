-- The bearer key (0037) can be replaced without ending anyone's access (#4).
--
-- A node computes an access token's proof (session id || HMAC(bearer key, id)) per request from
-- the token's session id, so replacing the key ends no token: each node needs only the new key.
-- `bearer_key` now holds one row per key: the current one (`retire_after` NULL, at most one) and
-- keys being retired, still accepted until `retire_after` (by the database's clock: the caller's
-- `p_now` is the caller's word, and a leaked key must stop working whatever a caller claims).
-- `rotate_bearer_key` (for the sign-in login, which `palisade keys rotate-bearer` uses, never the
-- runtime role: a request's connection could otherwise retire every node's key at will) adds a
-- key, retires the others after a grace that covers every node's next reload (each node reads
-- the current key every second), and deletes keys whose grace has passed, so a retired key's
-- bytes leave the table at the next rotation.
DO $$
DECLARE
    v_schema text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';

    ALTER TABLE palisade.bearer_key DROP CONSTRAINT bearer_key_pkey;
    ALTER TABLE palisade.bearer_key DROP COLUMN only_row;
    ALTER TABLE palisade.bearer_key
        ADD COLUMN id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN retire_after timestamptz;
    CREATE UNIQUE INDEX bearer_key_one_current ON palisade.bearer_key ((true)) WHERE retire_after IS NULL;

    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION palisade.valid_session(p_token_hash bytea, p_now timestamptz) RETURNS palisade.sessions
            LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
            AS $body$
        DECLARE
            s palisade.sessions%%ROWTYPE;
            v_ends timestamptz;
            v_id bytea;
            v_mac bytea;
        BEGIN
            IF length(p_token_hash) = 48 THEN
                v_id := substring(p_token_hash FROM 1 FOR 16);
                v_mac := sha256(substring(p_token_hash FROM 17));
                IF NOT EXISTS (SELECT 1 FROM palisade.bearer_key k
                                WHERE (k.retire_after IS NULL OR k.retire_after > now())
                                  AND sha256(%I.hmac(v_id, k.key, 'sha256')) = v_mac) THEN
                    RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
                END IF;
                SELECT * INTO s FROM palisade.sessions WHERE id = encode(v_id, 'hex')::uuid;
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

    EXECUTE format($f$
        CREATE FUNCTION palisade.rotate_bearer_key(p_grace_seconds integer) RETURNS integer
            LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, palisade
            AS $body$
        DECLARE
            v_id integer;
        BEGIN
            IF p_grace_seconds IS NULL OR p_grace_seconds < 0 OR p_grace_seconds > 86400 THEN
                RAISE EXCEPTION 'the grace must be 0 to 86400 seconds' USING ERRCODE = '22023';
            END IF;
            DELETE FROM palisade.bearer_key WHERE retire_after <= now();
            -- A key already being retired keeps its earlier end.
            UPDATE palisade.bearer_key
               SET retire_after = least(coalesce(retire_after, 'infinity'), now() + make_interval(secs => p_grace_seconds));
            INSERT INTO palisade.bearer_key (key) VALUES (%I.gen_random_bytes(32)) RETURNING id INTO v_id;
            RETURN v_id;
        END
        $body$
    $f$, v_schema);
END
$$;
REVOKE ALL ON FUNCTION palisade.rotate_bearer_key(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade.rotate_bearer_key(integer) TO palisade_signin;
