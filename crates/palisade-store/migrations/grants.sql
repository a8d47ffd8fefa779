-- Grants for the runtime role, re-applied on every migrate. {role} is replaced by the quoted,
-- validated runtime role name. The runtime role owns nothing and gets only what it needs.
REVOKE ALL ON ALL TABLES IN SCHEMA palisade FROM {role};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA palisade FROM PUBLIC;
-- Functions too start from nothing: a grant dropped from this file is revoked on the next migrate.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA palisade FROM {role};
-- The key keeper's jobs run as the `_keys` login, never as the runtime role (0025). (Only if
-- it is a member: revoking a membership that does not exist logs a warning on every start.)
-- Likewise sessions are opened by the `_signin` login only (0036); migrate.rs grants each
-- membership to its own login after this file.
DO $$
BEGIN
    IF pg_has_role('{role}'::regrole, 'palisade_keyjobs', 'MEMBER') THEN
        REVOKE palisade_keyjobs FROM {role};
    END IF;
    IF pg_has_role('{role}'::regrole, 'palisade_signin', 'MEMBER') THEN
        REVOKE palisade_signin FROM {role};
    END IF;
END
$$;
GRANT USAGE ON SCHEMA palisade TO {role};
GRANT SELECT ON palisade.schema_migrations TO {role};
-- Accounts: no password hash read or written, no account created, here (0042): those are the
-- sign-in login's (palisade_signin). A password is changed through set_own_password, for the
-- verified caller only.
GRANT SELECT (id, email, name, is_instance_admin, created_at, updated_at, email_verified_at) ON palisade.users TO {role};
GRANT UPDATE (name, updated_at) ON palisade.users TO {role};
GRANT EXECUTE ON FUNCTION palisade.set_own_password(text, timestamptz), palisade.password_hash_census() TO {role};
-- Sign-in attempts are counted, cleared and pruned only through these functions (0030); counting
-- and pruning are the sign-in login's, and clearing is for the verified caller only (0044).
GRANT EXECUTE ON FUNCTION palisade.clear_login_attempts(uuid) TO {role};
-- Token hashes are readable only by enter_session (SECURITY DEFINER): a compromised runtime
-- connection cannot lift another user's session proof. Sessions are inserted only by the
-- sign-in login (palisade_signin, 0036), never by {role}.
GRANT SELECT (id, user_id, created_at, last_seen_at, expires_at, idle_timeout, revoked_at, ip, user_agent, authenticated_at,
               refresh_expires_at, amr)
    ON palisade.sessions TO {role};
GRANT UPDATE (revoked_at) ON palisade.sessions TO {role};
GRANT SELECT, INSERT ON palisade.orgs TO {role};
GRANT UPDATE (name, updated_at, session_idle_timeout) ON palisade.orgs TO {role};
GRANT SELECT, INSERT, DELETE ON palisade.memberships TO {role};
GRANT UPDATE (role, sessions_not_before, custom_role_id) ON palisade.memberships TO {role};
-- The audit log is append-only for the server: no UPDATE, no DELETE.
GRANT SELECT, INSERT ON palisade.audit_events TO {role};
GRANT EXECUTE ON FUNCTION palisade.current_user_id() TO {role};
GRANT EXECUTE ON FUNCTION palisade.current_session_id() TO {role};
GRANT EXECUTE ON FUNCTION palisade.enter_session(bytea, timestamptz) TO {role};
GRANT EXECUTE ON FUNCTION palisade.enter_tenant(bytea, timestamptz, uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.enter_new_tenant(bytea, timestamptz, uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_role(text[]) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_outranks(uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_found(bigint) TO {role};
GRANT EXECUTE ON FUNCTION palisade.my_orgs() TO {role};
GRANT EXECUTE ON FUNCTION palisade.verify_email(bytea, timestamptz) TO {role};
GRANT EXECUTE ON FUNCTION palisade.enter_reset(bytea, timestamptz) TO {role};
GRANT EXECUTE ON FUNCTION palisade.device_seen(uuid, text) TO {role};
-- Email tokens are minted by the sign-in login only (0042) and consumed only by the functions
-- above; sign-in challenges are minted, entered and completed by the sign-in login only.
GRANT SELECT, INSERT, UPDATE, DELETE ON palisade.totp_factors TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON palisade.backup_codes TO {role};
GRANT EXECUTE ON FUNCTION palisade.mfa_enabled_for(text) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_recent_auth(timestamptz, float8) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_own_mfa() TO {role};
GRANT EXECUTE ON FUNCTION palisade.change_email(bytea, timestamptz) TO {role};
GRANT SELECT, INSERT ON palisade.invitations TO {role};
GRANT UPDATE (revoked_at) ON palisade.invitations TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_can_grant(text) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_an_owner() TO {role};
GRANT EXECUTE ON FUNCTION palisade.accept_invitation(bytea, timestamptz, uuid, bytea) TO {role};
GRANT UPDATE (authenticated_at) ON palisade.sessions TO {role};
GRANT UPDATE (mfa_policy) ON palisade.orgs TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_permission(text) TO {role};
GRANT SELECT, INSERT, DELETE ON palisade.collections TO {role};
GRANT UPDATE (schema, version, schema_id, updated_at) ON palisade.collections TO {role};
GRANT SELECT, INSERT ON palisade.collection_versions TO {role};
GRANT SELECT, INSERT, DELETE ON palisade.records TO {role};
GRANT UPDATE (data, version, assignees, updated_at, sealed, sealed_fields) ON palisade.records TO {role};
GRANT EXECUTE ON FUNCTION palisade.lock_collection(text, uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.lock_collection_for_change(text, uuid, text) TO {role};
GRANT EXECUTE ON FUNCTION palisade.lock_record(text, uuid, integer) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_members(uuid[]) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_collection_quota(integer) TO {role};
-- The audit chain: the server reads it; only the sequencer (palisade_sealer, through the
-- functions it owns) writes it.
GRANT SELECT ON palisade.audit_chain, palisade.audit_chain_heads, palisade.audit_checkpoints TO {role};
GRANT SELECT ON palisade.audit_sealer TO {role};
GRANT EXECUTE ON FUNCTION palisade.seal_audit_events(integer) TO {role};
GRANT EXECUTE ON FUNCTION palisade.due_checkpoints(timestamptz, bigint, interval, integer) TO {role};
GRANT EXECUTE ON FUNCTION palisade.record_checkpoint(uuid, bigint, bytea, timestamptz, text, bytea) TO {role};
GRANT EXECUTE ON FUNCTION palisade.audit_field(text) TO palisade_sealer;
GRANT EXECUTE ON FUNCTION palisade.audit_hash(bigint, bytea, palisade.audit_events) TO palisade_sealer;
-- Signing keys: public parts readable, private parts sealed with the instance key. Access-token
-- keys are rotated and revoked, and the audit key added (add_audit_key), by the sign-in login
-- only (0043).
GRANT SELECT ON palisade.signing_keys TO {role};
-- Refresh tokens: the sign-in login adds the first of a family (palisade_signin, 0036); only
-- rotate_refresh reads or uses them (their hashes are never readable by the runtime role).
GRANT EXECUTE ON FUNCTION palisade.rotate_refresh(bytea, bytea, timestamptz, uuid, inet, text, text) TO {role};
GRANT SELECT ON palisade.role_permissions TO {role};
GRANT SELECT, INSERT, DELETE ON palisade.custom_roles TO {role};
GRANT UPDATE (name, description, permissions, updated_at) ON palisade.custom_roles TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_permissions_held(text[]) TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_can_grant_custom(uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.access_review() TO {role};
GRANT EXECUTE ON FUNCTION palisade.is_admin_like(text) TO {role};
GRANT UPDATE (audit_retention_days, legal_hold) ON palisade.orgs TO {role};
GRANT EXECUTE ON FUNCTION palisade.retention_due(timestamptz, integer) TO {role};
GRANT EXECUTE ON FUNCTION palisade.purge_audit(uuid, bigint, bytea, timestamptz, text, bytea) TO {role};
GRANT EXECUTE ON FUNCTION palisade.instance_retention_due(timestamptz) TO {role};
GRANT EXECUTE ON FUNCTION palisade.purge_instance_audit(bigint, bytea, timestamptz, text, bytea) TO {role};
GRANT SELECT ON palisade.instance_audit TO {role};
GRANT SELECT ON palisade.org_usage TO {role};
GRANT EXECUTE ON FUNCTION palisade.require_record_quota(bigint, bigint, bigint) TO {role};
-- WebAuthn: a user's own credentials (row-level security); sign-in reads them only through the
-- functions below.
GRANT SELECT, INSERT, DELETE ON palisade.webauthn_credentials TO {role};
GRANT EXECUTE ON FUNCTION palisade.has_second_factor(uuid) TO {role};
GRANT EXECUTE ON FUNCTION palisade.second_factors(text) TO {role};
GRANT EXECUTE ON FUNCTION palisade.passkeys_for_email(text) TO {role};
GRANT EXECUTE ON FUNCTION palisade.complete_webauthn(bytea, timestamptz, bytea, jsonb) TO {role};
-- API keys: listed and managed under row-level security; the hash column is never readable.
GRANT SELECT (tenant_id, id, name, prefix, permissions, allowed_ips, created_by, created_at, expires_at,
              last_used_at, last_used_ip, revoked_at, rotated_from) ON palisade.api_keys TO {role};
GRANT INSERT ON palisade.api_keys TO {role};
GRANT UPDATE (revoked_at, expires_at) ON palisade.api_keys TO {role};
GRANT EXECUTE ON FUNCTION palisade.current_api_key_id() TO {role};
GRANT EXECUTE ON FUNCTION palisade.enter_tenant_key(bytea, timestamptz, uuid, inet) TO {role};
GRANT EXECUTE ON FUNCTION palisade.org_edge_settings(uuid) TO {role};
GRANT UPDATE (cors_origins) ON palisade.orgs TO {role};
GRANT EXECUTE ON FUNCTION palisade.set_org_plan(uuid, text, timestamptz) TO {role};
-- Data keys are stored wrapped; the provider holds what unwraps them.
-- Never DELETE: only the key keeper's checked functions retire or delete a data key. The UPDATE
-- on org_data_keys is for the KEY SHARE lock a sealed write takes (sealed_key_guard).
GRANT SELECT, INSERT ON palisade.org_data_keys TO {role};
GRANT UPDATE (rewrapped_at) ON palisade.org_data_keys TO {role};
-- Rewrapped only by the key jobs' login (palisade_keyjobs, 0043).
GRANT SELECT, INSERT ON palisade.instance_data_keys TO {role};
GRANT SELECT, INSERT, DELETE ON palisade.secrets TO {role};
GRANT UPDATE (sealed, version, updated_by, updated_at) ON palisade.secrets TO {role};
-- Sealed WebAuthn credentials (0021): the server inserts a credential only sealed
-- (`passkey_sealed`), never into the clear legacy `passkey` column, and stores a used one's new
-- state only through the sealed complete_webauthn; the clear-JSON version is not callable.
REVOKE INSERT ON palisade.webauthn_credentials FROM {role};
GRANT INSERT (id, user_id, name, credential_id, passkey_sealed, created_at) ON palisade.webauthn_credentials TO {role};
REVOKE EXECUTE ON FUNCTION palisade.complete_webauthn(bytea, timestamptz, bytea, jsonb) FROM {role};
-- Key status for the organization a request entered (org_key_rows checks the verified tenant);
-- rotation, rewrapping and shredding are the `_keys` login's (palisade_keyjobs, 0025).
GRANT EXECUTE ON FUNCTION palisade.org_key_rows(uuid, boolean) TO {role};
GRANT EXECUTE ON FUNCTION palisade.envelope_key(bytea) TO {role};
GRANT EXECUTE ON FUNCTION palisade.sealed_key_guard() TO {role};
-- Organization deletion: the owner schedules or cancels it; the key keeper's job shreds (0023).
GRANT EXECUTE ON FUNCTION palisade.schedule_org_deletion(uuid, interval) TO {role};
GRANT EXECUTE ON FUNCTION palisade.cancel_org_deletion(uuid) TO {role};
-- Caller settings are read through palisade.setting, which verifies them (0024); the runtime
-- role can neither write them through set_app nor read the key that seals them.
GRANT EXECUTE ON FUNCTION palisade.setting(text, boolean), palisade.setting(text) TO {role};
