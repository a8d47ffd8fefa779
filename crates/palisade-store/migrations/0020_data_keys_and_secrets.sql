-- Envelope encryption (E2–E5). A data key is 256 random bits stored here only wrapped by a
-- wrapping key that lives in the key provider (a key-store file or an HSM), never in this
-- database: a dump of it decrypts nothing. Each organization has its own wrapping key (so
-- destroying it shreds that organization alone); instance secrets (TOTP seeds, signing keys)
-- have the instance's.

-- An organization's data keys. One is active (encrypts new values); retired ones still decrypt
-- until a rotation has re-encrypted everything under them, then they are deleted.
CREATE TABLE palisade.org_data_keys (
    tenant_id    uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    -- The provider's name for the wrapping key, e.g. org_01j….v1.
    wrapping_key text NOT NULL CHECK (wrapping_key ~ '^[a-z0-9_.-]{1,128}$'),
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    -- When its wrapping key last changed (a KEK rotation rewraps without touching data).
    rewrapped_at timestamptz,
    retired_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX org_data_keys_one_active ON palisade.org_data_keys (tenant_id) WHERE retired_at IS NULL;
ALTER TABLE palisade.org_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.org_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.org_data_keys
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- The instance's data keys (TOTP seeds, WebAuthn credentials, token-signing private keys).
CREATE TABLE palisade.instance_data_keys (
    id           uuid PRIMARY KEY,
    wrapping_key text NOT NULL CHECK (wrapping_key ~ '^[a-z0-9_.-]{1,128}$'),
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    rewrapped_at timestamptz,
    retired_at   timestamptz
);
CREATE UNIQUE INDEX instance_data_keys_one_active ON palisade.instance_data_keys ((true)) WHERE retired_at IS NULL;

-- An organization's write-only secrets (connector and webhook credentials): the value is only
-- ever stored sealed under the organization's data key, bound to the row.
CREATE TABLE palisade.secrets (
    tenant_id  uuid NOT NULL REFERENCES palisade.orgs (tenant_id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9_.-]{0,99}$'),
    sealed     bytea NOT NULL CHECK (get_byte(sealed, 0) = 225),
    version    integer NOT NULL DEFAULT 1,
    created_by uuid REFERENCES palisade.users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL,
    updated_by uuid REFERENCES palisade.users (id) ON DELETE SET NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);
ALTER TABLE palisade.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.secrets
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- Sensitive record fields (x-palisade-sensitive) move out of `data` into one envelope per record;
-- sealed_fields names them (names are not secret: the schema publishes them), so a masked answer
-- can say what it left out without decrypting anything.
ALTER TABLE palisade.records
    ADD COLUMN sealed bytea CHECK (sealed IS NULL OR get_byte(sealed, 0) = 225),
    ADD COLUMN sealed_fields text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT records_sealed_named CHECK ((sealed IS NULL) = (cardinality(sealed_fields) = 0));

-- secrets.manage is an administrator's permission for the "admins must use MFA" policy.
CREATE OR REPLACE FUNCTION palisade.is_admin_like(p_permissions text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT p_permissions ~ ',(members\.manage|roles\.manage|security\.settings|org\.settings|api_keys\.manage|secrets\.manage),' $$;
