-- The three lookups of a password sign-in were SQL functions with SECURITY DEFINER and a
-- search_path. Such a function is never inlined, and PostgreSQL 15 parses and plans the body
-- of a non-inlined SQL function on every call: ~620 µs of the database's ~1.8 ms per sign-in
-- under load (pg_stat_user_functions). In PL/pgSQL their plans are cached per connection.
-- Same queries, same results, same privileges (CREATE OR REPLACE keeps the grants).
CREATE OR REPLACE FUNCTION palisade.device_seen(p_user uuid, p_user_agent text) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.sessions s WHERE s.user_id = p_user) THEN
        RETURN 'first';
    ELSIF EXISTS (SELECT 1 FROM palisade.sessions s WHERE s.user_id = p_user
                  AND s.user_agent IS NOT DISTINCT FROM p_user_agent) THEN
        RETURN 'known';
    END IF;
    RETURN 'new';
END
$$;

CREATE OR REPLACE FUNCTION palisade.second_factors(p_email text) RETURNS text[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    RETURN (SELECT array_remove(ARRAY[
        CASE WHEN EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = u.id AND f.confirmed_at IS NOT NULL)
             THEN 'totp' END,
        CASE WHEN EXISTS (SELECT 1 FROM palisade.webauthn_credentials w WHERE w.user_id = u.id) THEN 'webauthn' END
    ], NULL)
      FROM palisade.users u WHERE u.email = p_email);
END
$$;

CREATE OR REPLACE FUNCTION palisade.passkeys_for_email(p_email text)
    RETURNS TABLE (id uuid, user_id uuid, passkey_sealed bytea, passkey jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    RETURN QUERY SELECT w.id, w.user_id, w.passkey_sealed, w.passkey
      FROM palisade.webauthn_credentials w JOIN palisade.users u ON u.id = w.user_id
     WHERE u.email = p_email ORDER BY w.created_at;
END
$$;
