-- Custom roles (an organization's own sets of permissions), the access review, and audit
-- retention with legal hold and signed truncation.

-- ---------------------------------------------------------------- custom roles
CREATE TABLE palisade.custom_roles (
    tenant_id   uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'
                                     AND name NOT IN ('owner', 'admin', 'manager', 'member', 'contractor', 'viewer', 'custom')),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    permissions text[] NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);
ALTER TABLE palisade.custom_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.custom_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.custom_roles
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- A member holds a built-in role, or 'custom' with the custom role it names. A custom role in
-- use cannot be deleted.
ALTER TABLE palisade.memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE palisade.memberships ADD COLUMN custom_role_id uuid;
ALTER TABLE palisade.memberships ADD CONSTRAINT memberships_role_check CHECK (
    (role IN ('owner', 'admin', 'manager', 'member', 'contractor', 'viewer') AND custom_role_id IS NULL)
    OR (role = 'custom' AND custom_role_id IS NOT NULL));
ALTER TABLE palisade.memberships ADD CONSTRAINT memberships_custom_role_fkey
    FOREIGN KEY (tenant_id, custom_role_id) REFERENCES palisade.custom_roles (tenant_id, id);

-- Permissions that make a custom role count as an administrator (for the org MFA policy).
CREATE FUNCTION palisade.is_admin_like(p_permissions text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT p_permissions ~ ',(members\.manage|roles\.manage|security\.settings|org\.settings|api_keys\.manage),' $$;

DROP FUNCTION palisade.set_role_context(text);
-- As before, and for a custom role: its own permissions (only names the matrix knows).
CREATE FUNCTION palisade.set_role_context(p_role text, p_custom_role uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_permissions text;
BEGIN
    IF p_custom_role IS NULL THEN
        SELECT ',' || coalesce(string_agg(rp.permission, ',' ORDER BY rp.permission), '') || ','
          INTO v_permissions FROM palisade.role_permissions rp WHERE rp.role = p_role;
    ELSE
        SELECT ',' || coalesce(string_agg(p, ',' ORDER BY p), '') || ','
          INTO v_permissions
          FROM palisade.custom_roles cr, unnest(cr.permissions) p
         WHERE cr.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND cr.id = p_custom_role
           AND p IN (SELECT rp.permission FROM palisade.role_permissions rp WHERE rp.role = 'owner');
    END IF;
    v_permissions := coalesce(v_permissions, ',,');
    PERFORM set_config('app.role', p_role, true);
    PERFORM set_config('app.permissions', v_permissions, true);
    PERFORM set_config('app.record_scope',
                       CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END, true);
    RETURN v_permissions;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    m palisade.memberships%ROWTYPE;
    v_idle interval;
    v_policy text;
    v_permissions text;
BEGIN
    s := palisade.valid_session(p_token_hash, p_now);
    PERFORM set_config('app.user_id', s.user_id::text, true);
    PERFORM set_config('app.session_id', s.id::text, true);
    SELECT * INTO m FROM palisade.memberships WHERE tenant_id = p_org AND user_id = s.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    IF m.sessions_not_before IS NOT NULL AND s.created_at < m.sessions_not_before THEN
        RAISE EXCEPTION 'session revoked for this organization' USING ERRCODE = 'PA401';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    v_permissions := palisade.set_role_context(m.role, m.custom_role_id);
    SELECT o.session_idle_timeout, o.mfa_policy INTO v_idle, v_policy FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF v_idle IS NOT NULL AND s.last_seen_at + v_idle <= p_now THEN
        RAISE EXCEPTION 'session idle too long for this organization' USING ERRCODE = 'PA401';
    END IF;
    IF (v_policy = 'all' OR (v_policy = 'admins' AND (m.role IN ('owner', 'admin') OR palisade.is_admin_like(v_permissions))))
       AND NOT EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = s.user_id AND f.confirmed_at IS NOT NULL) THEN
        RAISE EXCEPTION 'this organization requires two-factor authentication' USING ERRCODE = 'PAMF1';
    END IF;
    PERFORM palisade.touch_session(s.id, s.last_seen_at, p_now);
    RETURN m.role;
END
$$;

CREATE OR REPLACE FUNCTION palisade.enter_new_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    v_user := palisade.enter_session(p_token_hash, p_now);
    IF NOT EXISTS (SELECT 1 FROM palisade.users WHERE id = v_user AND email_verified_at IS NOT NULL) THEN
        RAISE EXCEPTION 'verify your email address first' USING ERRCODE = 'PAEV1';
    END IF;
    INSERT INTO palisade.tenants (id, created_at) VALUES (p_org, p_now);
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM palisade.set_role_context('owner', NULL);
    RETURN v_user;
END
$$;

-- Fails (PA403) unless the caller holds every permission in p_permissions: nobody hands out
-- what they do not have.
CREATE FUNCTION palisade.require_permissions_held(p_permissions text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_permissions) p
                WHERE position(',' || p || ',' IN coalesce(current_setting('app.permissions', true), '')) = 0) THEN
        RAISE EXCEPTION 'you cannot grant permissions you do not hold' USING ERRCODE = 'PA403';
    END IF;
END
$$;

-- Gives a member a custom role: the caller must hold all its permissions, and only an owner
-- manages an owner (who must not be the organization's last).
CREATE FUNCTION palisade.require_can_grant_custom(p_role uuid) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_permissions text[];
BEGIN
    SELECT cr.permissions INTO v_permissions FROM palisade.custom_roles cr
     WHERE cr.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND cr.id = p_role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role not found' USING ERRCODE = 'PA404';
    END IF;
    PERFORM palisade.require_permissions_held(v_permissions);
END
$$;

-- ---------------------------------------------------------------- access review
-- Every member of the current organization with role, second-factor status and last activity
-- (from sessions, which the server role may otherwise only read for its own user). The caller
-- must hold members.manage.
CREATE FUNCTION palisade.access_review()
    RETURNS TABLE (user_id uuid, email text, name text, role text, custom_role_id uuid, custom_role text,
                   permissions text, mfa boolean, last_active_at timestamptz, joined_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    PERFORM palisade.require_permission('members.manage');
    RETURN QUERY
    SELECT m.user_id, u.email, u.name, m.role, m.custom_role_id, cr.name,
           CASE WHEN m.custom_role_id IS NULL
                THEN (SELECT string_agg(rp.permission, ',' ORDER BY rp.permission) FROM palisade.role_permissions rp WHERE rp.role = m.role)
                ELSE (SELECT string_agg(p, ',' ORDER BY p) FROM unnest(cr.permissions) p) END,
           EXISTS (SELECT 1 FROM palisade.totp_factors f WHERE f.user_id = m.user_id AND f.confirmed_at IS NOT NULL),
           (SELECT max(s.last_seen_at) FROM palisade.sessions s WHERE s.user_id = m.user_id),
           m.created_at
      FROM palisade.memberships m
      JOIN palisade.users u ON u.id = m.user_id
      LEFT JOIN palisade.custom_roles cr ON cr.tenant_id = m.tenant_id AND cr.id = m.custom_role_id
     WHERE m.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
     ORDER BY u.email;
END
$$;

-- ---------------------------------------------------------------- audit retention
ALTER TABLE palisade.orgs ADD COLUMN audit_retention_days integer NOT NULL DEFAULT 730
    CHECK (audit_retention_days >= 365 AND audit_retention_days <= 36500);
ALTER TABLE palisade.orgs ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;

-- Truncation checkpoints sign where a chain now starts; head checkpoints sign where it ended.
ALTER TABLE palisade.audit_checkpoints ADD COLUMN kind text NOT NULL DEFAULT 'head' CHECK (kind IN ('head', 'truncation'));
ALTER TABLE palisade.audit_checkpoints DROP CONSTRAINT audit_checkpoints_pkey;
ALTER TABLE palisade.audit_checkpoints ADD PRIMARY KEY (tenant_id, kind, seq);

CREATE POLICY sealer_purges ON palisade.audit_events FOR DELETE TO palisade_sealer USING (true);
CREATE POLICY sealer_notes ON palisade.audit_events FOR INSERT TO palisade_sealer WITH CHECK (true);
CREATE POLICY sealer_reads ON palisade.orgs FOR SELECT TO palisade_sealer USING (true);
GRANT DELETE, INSERT ON palisade.audit_events TO palisade_sealer;
GRANT DELETE ON palisade.audit_chain, palisade.audit_checkpoints TO palisade_sealer;
GRANT SELECT ON palisade.orgs TO palisade_sealer;

-- Organizations whose oldest kept events have outlived their retention (and no legal hold):
-- where each chain may be cut (the last position before the first event still to keep).
CREATE FUNCTION palisade.retention_due(p_now timestamptz, p_max integer)
    RETURNS TABLE (tenant_id uuid, seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT h.tenant_id, cut.seq, c.hash
      FROM palisade.audit_chain_heads h
      JOIN palisade.orgs o ON o.tenant_id = h.tenant_id AND NOT o.legal_hold
      CROSS JOIN LATERAL (
          SELECT coalesce((SELECT min(ch.seq) - 1 FROM palisade.audit_chain ch JOIN palisade.audit_events e ON e.id = ch.event_id
                            WHERE ch.tenant_id = h.tenant_id AND ch.seq > h.base_seq
                              AND e.occurred_at >= p_now - make_interval(days => o.audit_retention_days)),
                          h.seq) AS seq) cut
      JOIN palisade.audit_chain c ON c.tenant_id = h.tenant_id AND c.seq = cut.seq
     WHERE cut.seq > h.base_seq
     ORDER BY h.tenant_id LIMIT p_max
$$;
ALTER FUNCTION palisade.retention_due(timestamptz, integer) OWNER TO palisade_sealer;

-- Cuts an organization's chain at p_seq: deletes the events and positions up to it and the head
-- checkpoints they held, stores the signed truncation checkpoint, moves the chain's base, and
-- notes the purge as an event of its own. Refuses (PA403) under legal hold, for an event still
-- within retention, for a time more than 5 minutes ahead of the database clock, or for a
-- position whose hash is not p_hash.
CREATE FUNCTION palisade.purge_audit(p_tenant uuid, p_seq bigint, p_hash bytea, p_now timestamptz,
                                     p_key_id text, p_signature bytea) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    o palisade.orgs%ROWTYPE;
    v_base bigint;
    v_deleted bigint;
BEGIN
    IF p_now > now() + interval '5 minutes' THEN
        RAISE EXCEPTION 'the purge time is ahead of the database clock' USING ERRCODE = 'PA403';
    END IF;
    SELECT * INTO o FROM palisade.orgs WHERE tenant_id = p_tenant;
    IF NOT FOUND OR o.legal_hold THEN
        RAISE EXCEPTION 'no purge: the organization is under legal hold or unknown' USING ERRCODE = 'PA403';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.tenant_id = p_tenant AND c.seq = p_seq AND c.hash = p_hash) THEN
        RAISE EXCEPTION 'no such chain position' USING ERRCODE = 'PA404';
    END IF;
    SELECT h.base_seq INTO v_base FROM palisade.audit_chain_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
    IF EXISTS (SELECT 1 FROM palisade.audit_chain c JOIN palisade.audit_events e ON e.id = c.event_id
                WHERE c.tenant_id = p_tenant AND c.seq > v_base AND c.seq <= p_seq
                  AND e.occurred_at >= p_now - make_interval(days => o.audit_retention_days)) THEN
        RAISE EXCEPTION 'an event up to that position is still within retention' USING ERRCODE = 'PA403';
    END IF;
    INSERT INTO palisade.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, signature)
    VALUES (p_tenant, 'truncation', p_seq, p_hash, p_now, p_key_id, p_signature);
    DELETE FROM palisade.audit_events e USING palisade.audit_chain c
     WHERE c.tenant_id = p_tenant AND c.seq <= p_seq AND e.id = c.event_id;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM palisade.audit_chain c WHERE c.tenant_id = p_tenant AND c.seq <= p_seq;
    DELETE FROM palisade.audit_checkpoints k WHERE k.tenant_id = p_tenant AND k.seq <= p_seq AND k.kind = 'head';
    DELETE FROM palisade.audit_checkpoints k WHERE k.tenant_id = p_tenant AND k.seq < p_seq AND k.kind = 'truncation';
    UPDATE palisade.audit_chain_heads SET base_seq = p_seq, base_hash = p_hash WHERE tenant_id = p_tenant;
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, details)
    VALUES (gen_random_uuid(), p_tenant, p_now, 'system', 'audit.purged', 'success',
            jsonb_build_object('through_seq', p_seq, 'events', v_deleted, 'retention_days', o.audit_retention_days));
    RETURN v_deleted;
END
$$;
ALTER FUNCTION palisade.purge_audit(uuid, bigint, bytea, timestamptz, text, bytea) OWNER TO palisade_sealer;
