-- Bearer-key retirement by the database's real clock, and rotations one at a time (review of
-- 0038).
--
-- 0038 compared `retire_after` with `now()`, the start of the calling transaction: a
-- transaction opened before `palisade keys rotate-bearer --now` kept accepting the old key for
-- as long as it stayed open, which a holder of the leaked key and the runtime password could
-- arrange. `clock_timestamp()` is the time of the check. (A REPEATABLE READ transaction opened
-- before the rotation still sees the old key as current: after a leak, also end the runtime and
-- sign-in logins' connections, README "palisade keys rotate-bearer".)
-- Two concurrent rotations each retired the keys they saw and then both inserted a current key:
-- the second failed on bearer_key_one_current with a bare unique violation. The table is now
-- locked against other rotations first (readers are not blocked).
DO $$
DECLARE
    v_schema text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';

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
                                WHERE (k.retire_after IS NULL OR k.retire_after > clock_timestamp())
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
        CREATE OR REPLACE FUNCTION palisade.rotate_bearer_key(p_grace_seconds integer) RETURNS integer
            LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, palisade
            AS $body$
        DECLARE
            v_id integer;
        BEGIN
            IF p_grace_seconds IS NULL OR p_grace_seconds < 0 OR p_grace_seconds > 86400 THEN
                RAISE EXCEPTION 'the grace must be 0 to 86400 seconds' USING ERRCODE = '22023';
            END IF;
            LOCK TABLE palisade.bearer_key IN SHARE ROW EXCLUSIVE MODE;
            DELETE FROM palisade.bearer_key WHERE retire_after <= clock_timestamp();
            -- A key already being retired keeps its earlier end.
            UPDATE palisade.bearer_key
               SET retire_after = least(coalesce(retire_after, 'infinity'),
                                        clock_timestamp() + make_interval(secs => p_grace_seconds));
            INSERT INTO palisade.bearer_key (key) VALUES (%I.gen_random_bytes(32)) RETURNING id INTO v_id;
            RETURN v_id;
        END
        $body$
    $f$, v_schema);
END
$$;
