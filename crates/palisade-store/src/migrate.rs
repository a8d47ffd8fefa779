//! Schema migrations and the runtime role, applied over the admin (owner) connection.
//!
//! Migrations are plain SQL files compiled into the binary, applied in order under an advisory
//! lock, each in its own transaction, with a checksum so an edited migration is noticed.

use palisade_core::OrgRole;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::StoreError;

struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/0001_foundation.sql") },
    Migration { version: 2, name: "lockout", sql: include_str!("../migrations/0002_lockout.sql") },
    Migration { version: 3, name: "sessions", sql: include_str!("../migrations/0003_sessions.sql") },
    Migration { version: 4, name: "org_listing", sql: include_str!("../migrations/0004_org_listing.sql") },
    Migration { version: 5, name: "email", sql: include_str!("../migrations/0005_email.sql") },
    Migration { version: 6, name: "mfa", sql: include_str!("../migrations/0006_mfa.sql") },
    Migration {
        version: 7,
        name: "step_up_and_mfa_policy",
        sql: include_str!("../migrations/0007_step_up_and_mfa_policy.sql"),
    },
    Migration { version: 8, name: "email_change", sql: include_str!("../migrations/0008_email_change.sql") },
    Migration { version: 9, name: "invitations", sql: include_str!("../migrations/0009_invitations.sql") },
    Migration {
        version: 10,
        name: "collections_records",
        sql: include_str!("../migrations/0010_collections_records.sql"),
    },
    Migration { version: 11, name: "audit_chain", sql: include_str!("../migrations/0011_audit_chain.sql") },
    Migration {
        version: 12,
        name: "roles_review_retention",
        sql: include_str!("../migrations/0012_roles_review_retention.sql"),
    },
    Migration { version: 13, name: "audit_list_index", sql: include_str!("../migrations/0013_audit_list_index.sql") },
    Migration { version: 14, name: "record_quotas", sql: include_str!("../migrations/0014_record_quotas.sql") },
    Migration { version: 15, name: "access_tokens", sql: include_str!("../migrations/0015_access_tokens.sql") },
    Migration { version: 16, name: "webauthn", sql: include_str!("../migrations/0016_webauthn.sql") },
    Migration { version: 17, name: "api_keys", sql: include_str!("../migrations/0017_api_keys.sql") },
    Migration { version: 18, name: "org_plans", sql: include_str!("../migrations/0018_org_plans.sql") },
    Migration { version: 19, name: "org_cors", sql: include_str!("../migrations/0019_org_cors.sql") },
    Migration {
        version: 20,
        name: "data_keys_and_secrets",
        sql: include_str!("../migrations/0020_data_keys_and_secrets.sql"),
    },
    Migration { version: 21, name: "sealed_passkeys", sql: include_str!("../migrations/0021_sealed_passkeys.sql") },
    Migration { version: 22, name: "key_rotation", sql: include_str!("../migrations/0022_key_rotation.sql") },
    Migration { version: 23, name: "org_deletion", sql: include_str!("../migrations/0023_org_deletion.sql") },
    Migration { version: 24, name: "verified_settings", sql: include_str!("../migrations/0024_verified_settings.sql") },
    Migration { version: 25, name: "key_jobs", sql: include_str!("../migrations/0025_key_jobs.sql") },
    Migration { version: 26, name: "retention_walk", sql: include_str!("../migrations/0026_retention_walk.sql") },
    Migration {
        version: 27,
        name: "chain_position_by_event",
        sql: include_str!("../migrations/0027_chain_position_by_event.sql"),
    },
    Migration { version: 28, name: "faster_sealing", sql: include_str!("../migrations/0028_faster_sealing.sql") },
    Migration {
        version: 29,
        name: "cached_login_lookups",
        sql: include_str!("../migrations/0029_cached_login_lookups.sql"),
    },
    Migration { version: 30, name: "login_attempts", sql: include_str!("../migrations/0030_login_attempts.sql") },
    Migration { version: 31, name: "sealer_plan", sql: include_str!("../migrations/0031_sealer_plan.sql") },
    Migration {
        version: 32,
        name: "due_checkpoints_by_index",
        sql: include_str!("../migrations/0032_due_checkpoints_by_index.sql"),
    },
    Migration { version: 33, name: "key_work_by_index", sql: include_str!("../migrations/0033_key_work_by_index.sql") },
    Migration {
        version: 34,
        name: "rotate_refresh_by_keys",
        sql: include_str!("../migrations/0034_rotate_refresh_by_keys.sql"),
    },
    Migration {
        version: 35,
        name: "shredding_due_by_index",
        sql: include_str!("../migrations/0035_shredding_due_by_index.sql"),
    },
    Migration { version: 36, name: "sign_in_login", sql: include_str!("../migrations/0036_sign_in_login.sql") },
    Migration { version: 37, name: "bearer_proof", sql: include_str!("../migrations/0037_bearer_proof.sql") },
    Migration {
        version: 38,
        name: "bearer_key_rotation",
        sql: include_str!("../migrations/0038_bearer_key_rotation.sql"),
    },
    Migration {
        version: 39,
        name: "bearer_key_real_time",
        sql: include_str!("../migrations/0039_bearer_key_real_time.sql"),
    },
    Migration { version: 40, name: "instance_chain", sql: include_str!("../migrations/0040_instance_chain.sql") },
    Migration {
        version: 41,
        name: "definer_search_path",
        sql: include_str!("../migrations/0041_definer_search_path.sql"),
    },
    Migration { version: 42, name: "account_wall", sql: include_str!("../migrations/0042_account_wall.sql") },
    Migration { version: 43, name: "key_wall", sql: include_str!("../migrations/0043_key_wall.sql") },
    Migration { version: 44, name: "lockout_wall", sql: include_str!("../migrations/0044_lockout_wall.sql") },
    Migration { version: 45, name: "sealer_row_lock", sql: include_str!("../migrations/0045_sealer_row_lock.sql") },
    Migration { version: 46, name: "checkpoint_keys", sql: include_str!("../migrations/0046_checkpoint_keys.sql") },
];

const GRANTS: &str = include_str!("../migrations/grants.sql");

/// The newest migration this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// A PostgreSQL role name we are willing to interpolate: `[a-z_][a-z0-9_]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && raw.len() <= 63 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("{raw:?} is not a valid role name: use lower-case letters, digits and _, at most 63"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The login the key keeper's jobs use: `<runtime role>_keys` (member of palisade_keyjobs).
    pub fn keys_role(&self) -> Result<Self, String> {
        Self::parse(&format!("{}_keys", self.0))
    }

    /// The login that opens sessions: `<runtime role>_signin` (member of palisade_signin).
    pub fn signin_role(&self) -> Result<Self, String> {
        Self::parse(&format!("{}_signin", self.0))
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// What `migrate` did, for the CLI to print.
#[derive(Debug, Default)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_current: usize,
    pub role_created: bool,
    /// The key jobs' `_keys` login was created by this run.
    pub keys_role_created: bool,
    /// The sign-in `_signin` login was created by this run.
    pub signin_role_created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {version} ({name}) was changed after it was applied; restore the original file")]
    ChecksumMismatch { version: i32, name: &'static str },
    #[error("the database has migration {0}, newer than this build knows; upgrade palisade")]
    DatabaseIsNewer(i32),
    #[error("{0}")]
    RoleName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn pg(err: tokio_postgres::Error) -> MigrateError {
    MigrateError::Store(StoreError::from_pg(err))
}

fn checksum(sql: &str) -> String {
    hex_lower(&Sha256::digest(sql.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The logins `migrate` creates or corrects, with the passwords to give them (stored as SCRAM
/// verifiers: the plaintext never reaches the database server). A password left out keeps the
/// role's current one.
#[derive(Clone, Copy, Default)]
pub struct LoginPasswords<'a> {
    /// The runtime role's, which serves requests.
    pub runtime: Option<&'a SecretString>,
    /// The `_keys` login's, which runs key rotation and shredding.
    pub keys: Option<&'a SecretString>,
    /// The `_signin` login's, which opens sessions.
    pub signin: Option<&'a SecretString>,
}

/// Creates or upgrades the schema, then creates (or corrects) the runtime role, the key jobs'
/// `_keys` login, the sign-in `_signin` login and their grants.
pub async fn migrate(
    admin: &mut Client,
    runtime_role: &RoleName,
    passwords: LoginPasswords<'_>,
) -> Result<MigrationReport, MigrateError> {
    let mut report = MigrationReport::default();
    admin.batch_execute("SELECT pg_advisory_lock(727274001)").await.map_err(pg)?;
    let result = migrate_locked(admin, runtime_role, passwords, &mut report).await;
    let unlock = admin.batch_execute("SELECT pg_advisory_unlock(727274001)").await;
    result?;
    unlock.map_err(pg)?;
    Ok(report)
}

/// Sets how many days the instance chain (the audit events of no organization) is kept: the
/// operator's `instance_audit_retention_days`, written over the admin connection after
/// migrating (the runtime role can only read it; 0040). The database refuses a value outside
/// 365..=36500.
pub async fn set_instance_audit_retention(admin: &Client, days: i32) -> Result<(), MigrateError> {
    admin.execute("UPDATE palisade.instance_audit SET retention_days = $1", &[&days]).await.map_err(pg)?;
    Ok(())
}

async fn migrate_locked(
    admin: &mut Client,
    runtime_role: &RoleName,
    passwords: LoginPasswords<'_>,
    report: &mut MigrationReport,
) -> Result<(), MigrateError> {
    admin
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS palisade;
             REVOKE ALL ON SCHEMA palisade FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS palisade.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
    let applied = admin
        .query("SELECT version, checksum FROM palisade.schema_migrations ORDER BY version", &[])
        .await
        .map_err(pg)?;
    let applied: Vec<(i32, String)> = applied.iter().map(|r| (r.get(0), r.get(1))).collect();
    if let Some((newest, _)) = applied.last()
        && *newest > latest_version()
    {
        return Err(MigrateError::DatabaseIsNewer(*newest));
    }
    for migration in MIGRATIONS {
        let sum = checksum(migration.sql);
        match applied.iter().find(|(v, _)| *v == migration.version) {
            Some((_, existing)) if *existing == sum => report.already_current += 1,
            Some(_) => {
                return Err(MigrateError::ChecksumMismatch { version: migration.version, name: migration.name });
            }
            None => {
                let tx = admin.transaction().await.map_err(pg)?;
                tx.batch_execute(migration.sql).await.map_err(pg)?;
                tx.execute(
                    "INSERT INTO palisade.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&migration.version, &migration.name, &sum],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                report.applied.push(format!("{:04}_{}", migration.version, migration.name));
            }
        }
    }
    report.role_created = ensure_login_role(admin, runtime_role, passwords.runtime).await?;
    let keys_role = runtime_role.keys_role().map_err(MigrateError::RoleName)?;
    report.keys_role_created = ensure_login_role(admin, &keys_role, passwords.keys).await?;
    let signin_role = runtime_role.signin_role().map_err(MigrateError::RoleName)?;
    report.signin_role_created = ensure_login_role(admin, &signin_role, passwords.signin).await?;
    let tx = admin.transaction().await.map_err(pg)?;
    tx.batch_execute(&GRANTS.replace("{role}", &runtime_role.quoted())).await.map_err(pg)?;
    // The key jobs read and write what the server does (instance keys, audit events) besides
    // the key keeper's functions, which only they may run.
    tx.batch_execute(&GRANTS.replace("{role}", &keys_role.quoted())).await.map_err(pg)?;
    tx.batch_execute(&format!("GRANT palisade_keyjobs TO {}", keys_role.quoted())).await.map_err(pg)?;
    // The sign-in login likewise, plus the one thing the runtime role may not do: open a session.
    tx.batch_execute(&GRANTS.replace("{role}", &signin_role.quoted())).await.map_err(pg)?;
    tx.batch_execute(&format!("GRANT palisade_signin TO {}", signin_role.quoted())).await.map_err(pg)?;
    sync_role_permissions(&tx).await?;
    let database: String = tx.query_one("SELECT current_database()::text", &[]).await.map_err(pg)?.get(0);
    revoke_temporary(&tx, &database, &[runtime_role, &keys_role, &signin_role]).await?;
    tx.commit().await.map_err(pg)?;
    Ok(())
}

/// Takes TEMPORARY on `database` from PUBLIC and from palisade's logins. None of them needs
/// temporary objects, and a session's temporary schema is where SQL injected into one would
/// plant a type or table for a SECURITY DEFINER function to pick up (0041 pins every such
/// function's path so that it cannot; this is the second wall). PostgreSQL grants TEMPORARY to
/// PUBLIC on every new database, a copy of a template included, so whoever creates a database
/// for palisade (migrate, the test kit) calls this. Where the migrating role neither owns the
/// database nor is a superuser, PostgreSQL only warns and nothing changes; `controls check` (T2)
/// then reports the grant.
pub async fn revoke_temporary(
    admin: &impl tokio_postgres::GenericClient,
    database: &str,
    logins: &[&RoleName],
) -> Result<(), MigrateError> {
    let grantees: Vec<String> =
        std::iter::once("PUBLIC".to_owned()).chain(logins.iter().map(|role| role.quoted())).collect();
    let quoted_database = format!("\"{}\"", database.replace('"', "\"\""));
    admin
        .batch_execute(&format!("REVOKE TEMPORARY ON DATABASE {quoted_database} FROM {}", grantees.join(", ")))
        .await
        .map_err(pg)?;
    Ok(())
}

/// Writes the built-in permission matrix (palisade-core, the one source) into
/// `palisade.role_permissions`, where `set_role_context` reads it.
async fn sync_role_permissions(tx: &tokio_postgres::Transaction<'_>) -> Result<(), MigrateError> {
    let (roles, permissions): (Vec<&str>, Vec<&str>) = OrgRole::ALL
        .into_iter()
        .flat_map(|role| role.permissions().into_iter().map(move |p| (role.as_str(), p.as_str())))
        .unzip();
    tx.execute("DELETE FROM palisade.role_permissions", &[]).await.map_err(pg)?;
    tx.execute(
        "INSERT INTO palisade.role_permissions (role, permission) SELECT * FROM unnest($1::text[], $2::text[])",
        &[&roles, &permissions],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Creates the login if it is missing and puts it back in its place if it gained anything.
async fn ensure_login_role(
    admin: &Client,
    role: &RoleName,
    password: Option<&SecretString>,
) -> Result<bool, MigrateError> {
    let exists =
        admin.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role.as_str()]).await.map_err(pg)?.is_some();
    let q = role.quoted();
    if !exists {
        admin.batch_execute(&format!("CREATE ROLE {q} LOGIN")).await.map_err(pg)?;
    }
    // Re-checked every time: a runtime role that gained privileges is put back in its place.
    // Only wrong attributes are named: a CREATEROLE owner may not even mention SUPERUSER.
    let row = admin
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolreplication, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role.as_str()],
        )
        .await
        .map_err(pg)?;
    let wrong: Vec<&str> =
        [(0, "NOSUPERUSER"), (1, "NOBYPASSRLS"), (2, "NOREPLICATION"), (3, "NOCREATEDB"), (4, "NOCREATEROLE")]
            .into_iter()
            .filter(|(i, _)| row.get::<_, bool>(*i))
            .map(|(_, attribute)| attribute)
            .chain((!row.get::<_, bool>(5)).then_some("LOGIN"))
            .collect();
    if !wrong.is_empty() {
        admin.batch_execute(&format!("ALTER ROLE {q} {}", wrong.join(" "))).await.map_err(pg)?;
    }
    // No JIT for requests: their statements are short, and once an organization's row estimates
    // pass jit_above_cost PostgreSQL compiled every execution (~200 ms each: the record list
    // fell from ~1,500 to ~55 per second in the benchmark). Long reads (exports) never used it.
    admin
        .batch_execute(&format!(
            "ALTER ROLE {q} SET statement_timeout = '15s';
             ALTER ROLE {q} SET idle_in_transaction_session_timeout = '30s';
             ALTER ROLE {q} SET lock_timeout = '5s';
             ALTER ROLE {q} SET jit = off"
        ))
        .await
        .map_err(pg)?;
    let database: String = admin.query_one("SELECT current_database()", &[]).await.map_err(pg)?.get(0);
    admin
        .batch_execute(&format!("GRANT CONNECT ON DATABASE \"{}\" TO {q}", database.replace('"', "\"\"")))
        .await
        .map_err(pg)?;
    if let Some(password) = password {
        let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
        // The verifier is base64 and '$'-separated: no quote can occur in it.
        admin.batch_execute(&format!("ALTER ROLE {q} PASSWORD '{verifier}'")).await.map_err(pg)?;
    }
    Ok(!exists)
}
