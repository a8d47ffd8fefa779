-- Permissions decided in the database, org-defined collections, and records whose visibility
-- follows the caller's permissions (T3: contractors see only what they created or are assigned).

-- The built-in permission matrix, written on every migrate from the Rust matrix (palisade-core),
-- so the database and the application share one source. Instance table: no tenant data.
CREATE TABLE palisade.role_permissions (
    role       text NOT NULL,
    permission text NOT NULL,
    PRIMARY KEY (role, permission)
);

-- Sets what the caller may do in this transaction: app.role, app.permissions (a comma-framed
-- list, ",a,b,"), and app.record_scope ('all' with records.read_all, else 'own'), which the
-- records policy reads. Called only by the tenant-entering functions below.
CREATE FUNCTION palisade.set_role_context(p_role text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_permissions text;
BEGIN
    SELECT ',' || coalesce(string_agg(rp.permission, ',' ORDER BY rp.permission), '') || ','
      INTO v_permissions FROM palisade.role_permissions rp WHERE rp.role = p_role;
    PERFORM set_config('app.role', p_role, true);
    PERFORM set_config('app.permissions', v_permissions, true);
    PERFORM set_config('app.record_scope',
                       CASE WHEN position(',records.read_all,' IN v_permissions) > 0 THEN 'all' ELSE 'own' END, true);
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
    PERFORM palisade.set_role_context(m.role);
    SELECT o.session_idle_timeout, o.mfa_policy INTO v_idle, v_policy FROM palisade.orgs o WHERE o.tenant_id = p_org;
    IF v_idle IS NOT NULL AND s.last_seen_at + v_idle <= p_now THEN
        RAISE EXCEPTION 'session idle too long for this organization' USING ERRCODE = 'PA401';
    END IF;
    IF (v_policy = 'all' OR (v_policy = 'admins' AND m.role IN ('owner', 'admin')))
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
    PERFORM palisade.set_role_context('owner');
    RETURN v_user;
END
$$;

-- Fails (PA403) unless the caller's role holds p_permission. Unknown = denied: with no role
-- context set, the list is empty.
CREATE FUNCTION palisade.require_permission(p_permission text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF p_permission !~ '^[a-z_]+\.[a-z_]+$'
       OR position(',' || p_permission || ',' IN coalesce(current_setting('app.permissions', true), '')) = 0 THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'PA403';
    END IF;
END
$$;

CREATE TABLE palisade.collections (
    tenant_id  uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    schema     jsonb NOT NULL,
    version    integer NOT NULL CHECK (version > 0),
    -- A fresh id for every schema (create and each change): writers name the schema they checked
    -- against, which a version number alone cannot do once a name is deleted and reused.
    schema_id  uuid NOT NULL UNIQUE,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Every schema a collection has had, for the record of what changed and when.
CREATE TABLE palisade.collection_versions (
    tenant_id  uuid NOT NULL,
    name       text NOT NULL,
    version    integer NOT NULL,
    schema     jsonb NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name, version),
    FOREIGN KEY (tenant_id, name) REFERENCES palisade.collections (tenant_id, name) ON DELETE CASCADE
);

-- A collection with records cannot be deleted (the foreign key restricts), so nothing is lost
-- by accident.
CREATE TABLE palisade.records (
    tenant_id  uuid NOT NULL,
    id         uuid NOT NULL,
    collection text NOT NULL,
    data       jsonb NOT NULL,
    version    integer NOT NULL DEFAULT 1 CHECK (version > 0),
    created_by uuid NOT NULL,
    assignees  uuid[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, collection) REFERENCES palisade.collections (tenant_id, name)
);
CREATE INDEX records_by_collection ON palisade.records (tenant_id, collection, id);

ALTER TABLE palisade.collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.collections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.collections
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE palisade.collection_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.collection_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.collection_versions
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE palisade.records ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.records
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
-- T3, least privilege in the database: restrictive, so it narrows the tenant policy (AND). A
-- caller without records.read_all reaches only records they created or are assigned to, for
-- reading, changing and deleting alike, whatever the query asks for.
CREATE POLICY record_scope ON palisade.records AS RESTRICTIVE
    USING (current_setting('app.record_scope', true) = 'all'
           OR created_by = nullif(current_setting('app.user_id', true), '')::uuid
           OR nullif(current_setting('app.user_id', true), '')::uuid = ANY (assignees))
    WITH CHECK (current_setting('app.record_scope', true) = 'all'
           OR created_by = nullif(current_setting('app.user_id', true), '')::uuid
           OR nullif(current_setting('app.user_id', true), '')::uuid = ANY (assignees));

-- Takes a share lock on the collection at the schema the caller validated against: PA404 when
-- it does not exist, PASC1 when its schema changed since (retry). A schema change takes the row
-- exclusively, so no record slips in between its check and its commit.
CREATE FUNCTION palisade.lock_collection(p_name text, p_schema_id uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_schema_id uuid;
BEGIN
    SELECT c.schema_id INTO v_schema_id FROM palisade.collections c
     WHERE c.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND c.name = p_name
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection not found' USING ERRCODE = 'PA404';
    END IF;
    IF v_schema_id <> p_schema_id THEN
        RAISE EXCEPTION 'the collection schema changed; retry' USING ERRCODE = 'PASC1';
    END IF;
END
$$;

-- Locks a record the caller can see: PA404 when not visible (another tenant, another scope, or
-- gone), PAIM1 when p_version is given and differs (If-Match failed).
CREATE FUNCTION palisade.lock_record(p_collection text, p_id uuid, p_version integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_version integer;
BEGIN
    SELECT r.version INTO v_version FROM palisade.records r
     WHERE r.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
       AND r.collection = p_collection AND r.id = p_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'record not found' USING ERRCODE = 'PA404';
    END IF;
    IF p_version IS NOT NULL AND v_version <> p_version THEN
        RAISE EXCEPTION 'the record changed since it was read' USING ERRCODE = 'PAIM1';
    END IF;
END
$$;

-- Fails (PAAS1) unless every assignee is a member of the current organization.
CREATE FUNCTION palisade.require_members(p_users uuid[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_users) u(id)
                WHERE NOT EXISTS (SELECT 1 FROM palisade.memberships m
                                   WHERE m.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
                                     AND m.user_id = u.id)) THEN
        RAISE EXCEPTION 'an assignee is not a member of this organization' USING ERRCODE = 'PAAS1';
    END IF;
END
$$;

-- Fails (PAQ01) when the current organization already holds p_limit collections.
CREATE FUNCTION palisade.require_collection_quota(p_limit integer) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF (SELECT count(*) FROM palisade.collections
         WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid) >= p_limit THEN
        RAISE EXCEPTION 'collection quota reached' USING ERRCODE = 'PAQ01';
    END IF;
END
$$;

-- Locks a collection for a schema change: PA404 when missing, PASC1 when its schema or its
-- records (ids and versions, as sha-256 over "id:version," in id order) changed since the caller
-- validated them against the new schema.
CREATE FUNCTION palisade.lock_collection_for_change(p_name text, p_schema_id uuid, p_fingerprint text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_schema_id uuid;
    v_fingerprint text;
BEGIN
    SELECT c.schema_id INTO v_schema_id FROM palisade.collections c
     WHERE c.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND c.name = p_name
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection not found' USING ERRCODE = 'PA404';
    END IF;
    SELECT encode(sha256(convert_to(coalesce(string_agg(r.id::text || ':' || r.version || ',', '' ORDER BY r.id), ''), 'UTF8')), 'hex')
      INTO v_fingerprint FROM palisade.records r
     WHERE r.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid AND r.collection = p_name;
    IF v_schema_id <> p_schema_id OR v_fingerprint <> p_fingerprint THEN
        RAISE EXCEPTION 'the collection changed while the new schema was checked; retry' USING ERRCODE = 'PASC1';
    END IF;
END
$$;
