//! Live facts read from the database catalog: is the runtime role safe to serve with, and does
//! every tenant table carry forced row-level security. Used by `serve` (refuse to start) and by
//! `palisade controls check` (T1, T2).

use tokio_postgres::Client;

use crate::StoreError;

/// Tables that hold no tenant data, by design. Anything else without `tenant_id` is a finding.
pub const INSTANCE_TABLES: &[&str] = &[
    "schema_migrations",
    "users",
    "sessions",
    "tenants",
    "email_tokens",
    "totp_factors",
    "backup_codes",
    "mfa_challenges",
    "role_permissions",
    "audit_sealer",
    "signing_keys",
    "refresh_tokens",
    "webauthn_credentials",
    "instance_data_keys",
    "settings_key",
    "login_attempts",
    "bearer_key",
    "instance_audit",
];

/// The connected role's attributes, for the "owns nothing, no BYPASSRLS" rule.
#[derive(Debug, Clone)]
pub struct RoleFacts {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// Tables, views, sequences, functions and the schema itself owned by this role (or a role it
    /// can act as).
    pub owned_objects: Vec<String>,
    /// Roles this role is a member of that are superuser or bypass RLS.
    pub powerful_memberships: Vec<String>,
}

impl RoleFacts {
    /// Every reason this role must not serve requests. Empty means safe.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.superuser {
            problems.push(format!("role {} is a superuser", self.role));
        }
        if self.bypass_rls {
            problems.push(format!("role {} has BYPASSRLS", self.role));
        }
        if !self.owned_objects.is_empty() {
            problems.push(format!("role {} owns {}", self.role, self.owned_objects.join(", ")));
        }
        if !self.powerful_memberships.is_empty() {
            problems.push(format!(
                "role {} is a member of privileged role(s) {}",
                self.role,
                self.powerful_memberships.join(", ")
            ));
        }
        problems
    }
}

pub async fn current_role_facts(client: &Client) -> Result<RoleFacts, StoreError> {
    let row = client
        .query_one("SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .map_err(StoreError::from_pg)?;
    let owned = client
        .query(
            "SELECT 'schema palisade' FROM pg_namespace
               WHERE nspname = 'palisade' AND pg_has_role(current_user, nspowner, 'USAGE')
             UNION ALL
             SELECT format('table %s', c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'palisade' AND pg_has_role(current_user, c.relowner, 'USAGE')
             UNION ALL
             SELECT format('function %s', p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'palisade' AND pg_has_role(current_user, p.proowner, 'USAGE')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    let powerful = client
        .query(
            "SELECT r.rolname::text FROM pg_roles r
               WHERE r.rolname <> current_user AND (r.rolsuper OR r.rolbypassrls)
                 AND pg_has_role(current_user, r.oid, 'MEMBER')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(RoleFacts {
        role: row.get(0),
        superuser: row.get(1),
        bypass_rls: row.get(2),
        owned_objects: owned.iter().map(|r| r.get(0)).collect(),
        powerful_memberships: powerful.iter().map(|r| r.get(0)).collect(),
    })
}

/// Row-level security facts for one table of the palisade schema.
#[derive(Debug, Clone)]
pub struct TableFacts {
    pub name: String,
    pub has_tenant_id: bool,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// Names of policies whose USING and WITH CHECK both compare against the tenant setting.
    pub tenant_policies: Vec<String>,
}

impl TableFacts {
    /// Why this table breaks the tenant-isolation rule, if it does.
    pub fn problem(&self) -> Option<String> {
        if !self.has_tenant_id {
            return (!INSTANCE_TABLES.contains(&self.name.as_str()))
                .then(|| format!("{} has no tenant_id and is not a declared instance table", self.name));
        }
        let mut missing = Vec::new();
        if !self.rls_enabled {
            missing.push("row-level security is not enabled");
        }
        if !self.rls_forced {
            missing.push("row-level security is not forced");
        }
        if self.tenant_policies.is_empty() {
            missing.push("no policy checks app.tenant_id in USING and WITH CHECK");
        }
        (!missing.is_empty()).then(|| format!("{}: {}", self.name, missing.join("; ")))
    }
}

pub async fn table_facts(client: &Client) -> Result<Vec<TableFacts>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text,
                    EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                            AND NOT a.attisdropped),
                    c.relrowsecurity, c.relforcerowsecurity,
                    coalesce((SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p
                      WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd = '*'
                        AND pg_get_expr(p.polqual, p.polrelid) LIKE '%tenant_id = (NULLIF(( SELECT palisade.setting(''app.tenant_id''::text, true)%'
                        AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%tenant_id = (NULLIF(( SELECT palisade.setting(''app.tenant_id''::text, true)%'),
                      '{}')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'palisade' AND c.relkind IN ('r', 'p')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows
        .iter()
        .map(|r| TableFacts {
            name: r.get(0),
            has_tenant_id: r.get(1),
            rls_enabled: r.get(2),
            rls_forced: r.get(3),
            tenant_policies: r.get(4),
        })
        .collect())
}

/// The caller settings (`app.tenant_id`, `app.user_id`, …) that policies and functions read
/// only through `palisade.setting`, which verifies them, and that only `palisade.set_app` writes
/// (migration 0024). The same list as `palisade.settings_mac`.
pub const CALLER_SETTINGS: &str =
    "(tenant_id|user_id|session_id|role|permissions|record_scope|api_key_id|api_key_hash)";

/// The key keeper's functions a request may reach: its own organization's key status and the
/// owner's scheduling or cancelling of a deletion (each checks the verified caller itself).
const REQUEST_KEY_FUNCTIONS: [&str; 3] = ["org_key_rows", "schedule_org_deletion", "cancel_org_deletion"];

/// How the connected role (the runtime role) could do the key jobs' work: execute a key keeper
/// function beyond those a request needs, or act as palisade_keyjobs. Empty means separated.
pub async fn key_job_problems(client: &Client) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            r#"SELECT format('role %s can execute palisade.%s', current_user, p.proname)
                 FROM pg_proc p
                WHERE p.pronamespace = 'palisade'::regnamespace
                  AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = 'palisade_keykeeper')
                  AND NOT p.proname = ANY($1)
                  AND has_function_privilege(current_user, p.oid, 'EXECUTE')
               UNION ALL
               SELECT format('role %s is a member of palisade_keyjobs', current_user)
                WHERE pg_has_role(current_user, 'palisade_keyjobs', 'MEMBER')
               ORDER BY 1"#,
            &[&REQUEST_KEY_FUNCTIONS.as_slice()],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every way the schema breaks the caller-settings rule, as the connected role sees it: a
/// function or policy that reads or writes a caller setting directly, or a connected role that
/// could write them or read the key that seals them. Empty means sound.
pub async fn caller_settings_problems(client: &Client) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            r#"SELECT format('function %s reads or writes a caller setting directly', p.proname)
                 FROM pg_proc p
                WHERE p.pronamespace = 'palisade'::regnamespace
                  AND p.proname NOT IN ('settings_mac', 'set_app', 'set_apps', 'setting')
                  AND p.prosrc ~ ('(current_setting|set_config)\(''app\.' || $1 || '''')
               UNION ALL
               SELECT format('policy %s on %s reads a caller setting unverified', pol.polname, c.relname)
                 FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
                WHERE c.relnamespace = 'palisade'::regnamespace
                  AND (coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') ~ 'current_setting\(''app\.'
                    OR coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') ~ 'current_setting\(''app\.')
               UNION ALL
               SELECT format('role %s can execute palisade.%s', current_user, p.proname)
                 FROM pg_proc p
                WHERE p.pronamespace = 'palisade'::regnamespace AND p.proname IN ('set_app', 'set_apps', 'settings_mac')
                  AND has_function_privilege(current_user, p.oid, 'EXECUTE')
               UNION ALL
               SELECT format('role %s can read palisade.settings_key', current_user)
                WHERE has_table_privilege(current_user, 'palisade.settings_key', 'SELECT')
               ORDER BY 1"#,
            &[&CALLER_SETTINGS],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What would let SQL injected into a palisade connection run code with the rights of the role
/// that owns the schema (0041): a SECURITY DEFINER function whose `search_path` does not end
/// with `pg_temp` (PostgreSQL then searches the caller's temporary schema first for type and
/// table names), or one of palisade's logins (this one, `<it>_keys`, `<it>_signin`) allowed to
/// create temporary objects at all. Empty means neither.
pub async fn definer_problems(client: &Client) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            r#"SELECT format('function %s runs with its owner''s rights but its search_path does not end with pg_temp',
                             p.oid::regprocedure)
                 FROM pg_proc p
                WHERE p.pronamespace = 'palisade'::regnamespace AND p.prosecdef
                  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                                   WHERE c ~ '^search_path=(.*,\s*)?"?pg_temp"?\s*$')
               UNION ALL
               SELECT format('role %s may create temporary objects in database %s (REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, %I)',
                             r.rolname, current_database(), current_database(), r.rolname)
                 FROM pg_roles r
                WHERE r.rolname IN (current_user, current_user || '_keys', current_user || '_signin')
                  AND has_database_privilege(r.oid, current_database(), 'TEMPORARY')
               ORDER BY 1"#,
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What would let SQL injected into a request's connection (this role's) take over an account
/// or the keys (0042, 0043): reading or replacing password hashes, creating accounts, minting
/// the email tokens and sign-in challenges that the `enter_*` functions turn into a verified
/// caller, publishing or revoking signing keys, rewriting the instance's wrapped data keys, or
/// counting and pruning sign-in attempts itself (0044). Those are the sign-in login's, or the key
/// jobs', alone. Empty means none of them.
pub async fn wall_problems(client: &Client) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT format('role %s can %s', current_user, what)
               FROM (VALUES
                     ('read password hashes', has_column_privilege('palisade.users', 'password_hash', 'SELECT')),
                     ('replace password hashes', has_column_privilege('palisade.users', 'password_hash', 'UPDATE')),
                     ('create accounts', has_any_column_privilege('palisade.users', 'INSERT')),
                     ('grant instance administration', has_column_privilege('palisade.users', 'is_instance_admin', 'UPDATE')),
                     ('mint email tokens', has_table_privilege('palisade.email_tokens', 'INSERT')),
                     ('mint sign-in challenges', has_table_privilege('palisade.mfa_challenges', 'INSERT')),
                     ('enter or complete sign-in challenges',
                      has_function_privilege('palisade.enter_mfa_challenge(bytea, timestamptz, integer, float8)', 'EXECUTE')
                      OR has_function_privilege('palisade.enter_webauthn_challenge(bytea, timestamptz, integer, float8)', 'EXECUTE')
                      OR has_function_privilege('palisade.complete_mfa(bytea, timestamptz, bigint, text)', 'EXECUTE')
                      OR has_function_privilege('palisade.complete_webauthn(bytea, timestamptz, bytea, bytea)', 'EXECUTE')),
                     ('add the audit signing key',
                      has_function_privilege('palisade.add_audit_key(text, bytea, bytea, timestamptz)', 'EXECUTE')),
                     ('publish signing keys', has_table_privilege('palisade.signing_keys', 'INSERT')),
                     ('retire or revoke signing keys', has_any_column_privilege('palisade.signing_keys', 'UPDATE')),
                     ('rotate the access-token key',
                      has_function_privilege('palisade.rotate_token_key(text, bytea, bytea, timestamptz, interval)', 'EXECUTE')),
                     ('rewrite the instance data keys', has_any_column_privilege('palisade.instance_data_keys', 'UPDATE')),
                     ('count or prune sign-in attempts at a time of its choosing',
                      has_function_privilege('palisade.count_login_attempt(text, timestamptz, integer, float8)', 'EXECUTE')
                      OR has_function_privilege('palisade.prune_login_attempts(timestamptz, float8)', 'EXECUTE'))
                    ) AS p(what, held)
              WHERE held
              ORDER BY 1",
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
