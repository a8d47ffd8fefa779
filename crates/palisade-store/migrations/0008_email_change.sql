-- Email change: confirmed from the new address (a link sent there), noticed to the old one.
ALTER TABLE palisade.email_tokens ADD COLUMN new_email text CHECK (new_email = lower(new_email));
ALTER TABLE palisade.email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE palisade.email_tokens ADD CONSTRAINT email_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password', 'change_email'));
ALTER TABLE palisade.email_tokens ADD CONSTRAINT email_tokens_change_has_address
    CHECK ((purpose = 'change_email') = (new_email IS NOT NULL));

-- Consumes a change token and moves the account to the new (now verified) address; the account
-- must still have the address the change was requested from. Raises PA410 for an unusable
-- token, 23505 if the new address was taken meanwhile. Returns the old address, for the notice.
CREATE FUNCTION palisade.change_email(p_token_hash bytea, p_now timestamptz) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_old text;
    v_new text;
BEGIN
    UPDATE palisade.email_tokens t SET used_at = p_now
      FROM palisade.users u
     WHERE t.token_hash = p_token_hash AND t.purpose = 'change_email' AND t.used_at IS NULL
       AND t.expires_at > p_now AND u.id = t.user_id AND u.email = t.email
    RETURNING t.user_id, t.email, t.new_email INTO v_user, v_old, v_new;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'invalid or expired token' USING ERRCODE = 'PA410';
    END IF;
    UPDATE palisade.users SET email = v_new, email_verified_at = p_now, updated_at = p_now WHERE id = v_user;
    PERFORM set_config('app.user_id', v_user::text, true);
    RETURN v_old;
END
$$;
