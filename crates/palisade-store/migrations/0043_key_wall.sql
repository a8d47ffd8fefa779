-- Signing keys and the instance's data keys behind the wall (after 0042's accounts).
--
-- Until now the runtime role could insert signing keys of any purpose, retire or revoke them,
-- and rewrite the instance's wrapped data keys. SQL injected into a request's connection could
-- therefore publish an access-token key of its own (every node trusts every published key, and
-- with a session id a token it signs is accepted), revoke every key (nobody's token verifies),
-- or overwrite the wrapped instance data keys (every TOTP seed, passkey and sealed signing key
-- lost at once). From here on:
--   * access-token keys are rotated and revoked by the sign-in login (palisade_signin), which
--     also signs the tokens; the runtime role only reads the published keys;
--   * the audit signing key is added by the sign-in login through add_audit_key, and only while
--     the instance has none (a unique index: one unretired audit key at a time);
--   * the instance data keys are rewrapped only by the key jobs' login (palisade_keyjobs, which
--     already runs `palisade keys rotate-kek`).
-- grants.sql no longer gives the runtime role any of the above.

GRANT INSERT ON palisade.signing_keys TO palisade_signin;
GRANT UPDATE (retired_at, revoked_at) ON palisade.signing_keys TO palisade_signin;
GRANT EXECUTE ON FUNCTION palisade.rotate_token_key(text, bytea, bytea, timestamptz, interval) TO palisade_signin;
GRANT UPDATE (wrapping_key, wrapped, rewrapped_at) ON palisade.instance_data_keys TO palisade_keyjobs;

-- One unretired audit key at a time. Two nodes could each add one before (both first to find
-- none); all but the newest are retired here (a retired key still verifies what it signed).
UPDATE palisade.signing_keys k SET retired_at = now()
 WHERE k.purpose = 'audit' AND k.retired_at IS NULL
   AND k.key_id <> (SELECT n.key_id FROM palisade.signing_keys n WHERE n.purpose = 'audit' AND n.retired_at IS NULL
                     ORDER BY n.created_at DESC, n.key_id LIMIT 1);
CREATE UNIQUE INDEX signing_keys_one_audit_key ON palisade.signing_keys (purpose)
    WHERE purpose = 'audit' AND retired_at IS NULL;

-- The instance's audit signing key, added only while there is none unretired: returns the id of
-- the key that signs from now on (the caller's, or the one another node added first). The index
-- above decides a race; no lock is held beyond the insert.
CREATE FUNCTION palisade.add_audit_key(p_key_id text, p_public bytea, p_sealed bytea, p_at timestamptz) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
DECLARE
    v_active text;
BEGIN
    INSERT INTO palisade.signing_keys (key_id, purpose, algorithm, public_key, sealed_private, created_at)
    VALUES (p_key_id, 'audit', 'Ed25519', p_public, p_sealed, p_at)
    ON CONFLICT DO NOTHING;
    SELECT k.key_id INTO STRICT v_active FROM palisade.signing_keys k
     WHERE k.purpose = 'audit' AND k.retired_at IS NULL;
    RETURN v_active;
END
$$;
REVOKE ALL ON FUNCTION palisade.add_audit_key(text, bytea, bytea, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION palisade.add_audit_key(text, bytea, bytea, timestamptz) TO palisade_signin;
