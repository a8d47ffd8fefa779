-- Foundation: accounts, sessions, organizations (tenants), memberships and the audit spine.
-- Runs as the migrating (owner) role. The runtime role's grants are in grants.sql, re-applied on every migrate.

CREATE TABLE palisade.users (
    id                uuid PRIMARY KEY,
    email             text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    password_hash     text NOT NULL,
    is_instance_admin boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Sessions hold only the SHA-256 of the bearer token; the token itself is shown once, at login.
CREATE TABLE palisade.sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    idle_timeout interval NOT NULL,
    revoked_at   timestamptz,
    ip           inet,
    user_agent   text
);
CREATE INDEX sessions_user_idx ON palisade.sessions (user_id);

-- The registry of tenant ids: no tenant data, only the guarantee that a new tenant id is fresh.
CREATE TABLE palisade.tenants (
    id         uuid PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE palisade.orgs (
    tenant_id  uuid PRIMARY KEY REFERENCES palisade.tenants (id),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE palisade.memberships (
    tenant_id  uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES palisade.users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'contractor', 'viewer')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user_idx ON palisade.memberships (user_id, tenant_id);

-- The audit spine. Actors and targets are ids only: people are resolved at read time, so an
-- erasure request never has to touch the log. tenant_id is NULL for events of no organization.
CREATE TABLE palisade.audit_events (
    id          uuid PRIMARY KEY,
    tenant_id   uuid,
    occurred_at timestamptz NOT NULL,
    actor_kind  text CHECK (actor_kind IN ('user', 'api_key', 'system')),
    actor_id    uuid,
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_kind text,
    target_id   uuid,
    ip          inet,
    user_agent  text CHECK (length(user_agent) <= 512),
    request_id  text CHECK (length(request_id) <= 128),
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_time_idx ON palisade.audit_events (tenant_id, occurred_at);

-- Row-level security: enabled and forced on every table with tenant_id. The tenant setting is
-- written only by the enter_* functions below, inside the transaction (set_config(..., true)).
ALTER TABLE palisade.orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.orgs
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
-- A signed-in user may list the organizations they belong to (and nothing else of them).
CREATE POLICY member_can_list ON palisade.orgs FOR SELECT
    USING (tenant_id IN (SELECT m.tenant_id FROM palisade.memberships m
                         WHERE m.user_id = nullif(current_setting('app.user_id', true), '')::uuid));

ALTER TABLE palisade.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.memberships
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY own_memberships ON palisade.memberships FOR SELECT
    USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);

ALTER TABLE palisade.audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.audit_events
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
-- Events that belong to no organization (sign-up, sign-in) may be written without a tenant.
CREATE POLICY instance_events_insert ON palisade.audit_events FOR INSERT
    WITH CHECK (tenant_id IS NULL);

-- Helpers for SQL that needs the verified caller. Plain functions: they only read settings.
CREATE FUNCTION palisade.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;
CREATE FUNCTION palisade.current_session_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.session_id', true), '')::uuid $$;

-- Verifies a session token hash at time p_now and records who is calling for this transaction.
-- Raises PA401 when the session is unknown, revoked, expired or idle too long.
CREATE FUNCTION palisade.enter_session(p_token_hash bytea, p_now timestamptz) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
BEGIN
    SELECT * INTO s FROM palisade.sessions WHERE token_hash = p_token_hash;
    IF NOT FOUND OR s.revoked_at IS NOT NULL OR s.expires_at <= p_now
       OR s.last_seen_at + s.idle_timeout <= p_now THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    -- Activity is recorded at most once a minute so reads stay reads.
    IF s.last_seen_at < p_now - interval '60 seconds' THEN
        UPDATE palisade.sessions SET last_seen_at = p_now WHERE id = s.id;
    END IF;
    PERFORM set_config('app.user_id', s.user_id::text, true);
    PERFORM set_config('app.session_id', s.id::text, true);
    RETURN s.user_id;
END
$$;

-- Verifies the session, then the membership, then sets the tenant for this transaction.
-- Raises PA401 (session) or PA404 (not a member: indistinguishable from a missing org).
CREATE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
    v_role text;
BEGIN
    v_user := palisade.enter_session(p_token_hash, p_now);
    -- app.user_id is set by now, so the own_memberships policy admits this lookup even for an
    -- owner role that row-level security is forced on.
    SELECT m.role INTO v_role FROM palisade.memberships m
     WHERE m.tenant_id = p_org AND m.user_id = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.role', v_role, true);
    RETURN v_role;
END
$$;

-- Verifies the session and claims a fresh tenant id for an organization being created.
-- Raises PA401 (session) or 23505 (the id is taken: a tenant can never be re-entered this way).
CREATE FUNCTION palisade.enter_new_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_user uuid;
BEGIN
    v_user := palisade.enter_session(p_token_hash, p_now);
    INSERT INTO palisade.tenants (id, created_at) VALUES (p_org, p_now);
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.role', 'owner', true);
    RETURN v_user;
END
$$;

-- Fails the transaction (PA403) unless the caller's role in the current tenant is one of p_roles.
-- The allowed roles come from the permission matrix in palisade-core; the check runs here so it
-- aborts a pipelined transaction before any statement queued behind it.
CREATE FUNCTION palisade.require_role(p_roles text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF nullif(current_setting('app.role', true), '') IS NULL
       OR NOT (current_setting('app.role', true) = ANY (p_roles)) THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'PA403';
    END IF;
END
$$;
