-- Members: invitations by email (single use, 7 days, bound to the invited address), role changes
-- and removal, with the rules checked here: never grant above your own role, only an owner
-- manages an owner, and an organization always keeps an owner.

CREATE TABLE palisade.invitations (
    tenant_id   uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    email       text NOT NULL CHECK (email = lower(email)),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'contractor', 'viewer')),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    invited_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE palisade.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.invitations
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- Fails (PA403) when the caller would grant a role above their own: only an owner grants owner.
CREATE FUNCTION palisade.require_can_grant(p_role text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF p_role = 'owner' AND current_setting('app.role', true) <> 'owner' THEN
        RAISE EXCEPTION 'only an owner may grant the owner role' USING ERRCODE = 'PA403';
    END IF;
END
$$;

-- Fails (PA412) when the current tenant would be left without an owner.
CREATE FUNCTION palisade.require_an_owner() RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.memberships
                    WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND role = 'owner') THEN
        RAISE EXCEPTION 'an organization must keep an owner' USING ERRCODE = 'PA412';
    END IF;
END
$$;

-- Accepts an invitation for the signed-in user: the session must be valid, the address verified
-- and equal to the invited one; the token names its organization (first 16 bytes), so the
-- lookup runs under that tenant's policy. Raises PA401 / PAEV1 / PA410.
CREATE FUNCTION palisade.accept_invitation(p_session_hash bytea, p_now timestamptz, p_org uuid, p_token_hash bytea)
    RETURNS TABLE (tenant_id uuid, role text, invitation_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_email text;
    v_verified timestamptz;
    i palisade.invitations%ROWTYPE;
BEGIN
    v_user := palisade.enter_session(p_session_hash, p_now);
    SELECT u.email, u.email_verified_at INTO v_email, v_verified FROM palisade.users u WHERE u.id = v_user;
    IF v_verified IS NULL THEN
        RAISE EXCEPTION 'verify your email address first' USING ERRCODE = 'PAEV1';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    UPDATE palisade.invitations inv SET accepted_at = p_now
     WHERE inv.tenant_id = p_org AND inv.token_hash = p_token_hash AND inv.accepted_at IS NULL
       AND inv.revoked_at IS NULL AND inv.expires_at > p_now AND inv.email = v_email
    RETURNING * INTO i;
    IF i.id IS NULL THEN
        RAISE EXCEPTION 'invalid or expired invitation' USING ERRCODE = 'PA410';
    END IF;
    INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
    VALUES (p_org, v_user, i.role, p_now)
    ON CONFLICT ON CONSTRAINT memberships_pkey DO NOTHING;
    PERFORM set_config('app.role', (SELECT m.role FROM palisade.memberships m WHERE m.tenant_id = p_org AND m.user_id = v_user), true);
    RETURN QUERY SELECT p_org, i.role, i.id;
END
$$;
