-- WebAuthn credentials are stored sealed (encryption at rest): the webauthn-rs Passkey JSON,
-- sealed by the server under the instance's data key (an envelope, first byte 0xE1) and bound to
-- the row's user and id. A credential belongs to its user, not to an organization, so it is
-- sealed under the instance's key and survives the destruction of any organization's.
--
-- Rows written before keep their clear `passkey` (nothing here can seal: the key provider is the
-- server's); the server reads either, and re-stores a clear one sealed at its next use. Exactly
-- one of the two is set.
ALTER TABLE palisade.webauthn_credentials
    ALTER COLUMN passkey DROP NOT NULL,
    ADD COLUMN passkey_sealed bytea CHECK (passkey_sealed IS NULL OR get_byte(passkey_sealed, 0) = 225),
    ADD CONSTRAINT webauthn_credentials_one_passkey CHECK (num_nonnulls(passkey, passkey_sealed) = 1);

-- The credentials of the account with this address, sealed or (old rows) clear, with the ids a
-- sealed one is bound to. Used before any session (sign-in, passwordless sign-in): nothing in it
-- opens without the instance's data key.
DROP FUNCTION palisade.passkeys_for_email(text);
CREATE FUNCTION palisade.passkeys_for_email(p_email text)
    RETURNS TABLE (id uuid, user_id uuid, passkey_sealed bytea, passkey jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT w.id, w.user_id, w.passkey_sealed, w.passkey
      FROM palisade.webauthn_credentials w JOIN palisade.users u ON u.id = w.user_id
     WHERE u.email = p_email ORDER BY w.created_at
$$;

-- Completes a WebAuthn challenge (as in 0016), storing the credential's new state sealed: a
-- clear legacy `passkey` is dropped in the same statement.
CREATE FUNCTION palisade.complete_webauthn(p_token_hash bytea, p_now timestamptz, p_credential_id bytea,
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
    UPDATE palisade.users SET failed_logins = 0, locked_until = NULL WHERE id = v_user;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_user;
END
$$;

-- The clear-JSON version no longer stores anything. It stays defined only because grants.sql
-- names it (the grants revoke it again); a later migration may drop it with that line.
CREATE OR REPLACE FUNCTION palisade.complete_webauthn(p_token_hash bytea, p_now timestamptz, p_credential_id bytea,
                                                      p_passkey jsonb)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    RAISE EXCEPTION 'WebAuthn credentials are stored sealed only: use complete_webauthn(bytea, timestamptz, bytea, bytea)';
END
$$;
