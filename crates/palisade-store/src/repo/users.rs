//! Accounts and sessions: instance tables, not tenant-scoped.

use std::net::IpAddr;

use palisade_core::{Email, PersonName, SessionId, SessionTokenHash, UserId};
use time::{Duration, OffsetDateTime};
use tokio_postgres::Row;

use crate::StoreError;
use crate::pipeline::{Anonymous, Authenticated, Db, Step, Tx};
use crate::repo::{audit, exactly_one};

/// What sign-in needs to check a password.
pub struct Credentials {
    pub user_id: UserId,
    pub password_hash: String,
    /// This attempt is the one that locked the account (it is still checked; success unlocks).
    pub locks_now: bool,
}

/// Lockout rules, from the instance configuration.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub threshold: i32,
    pub duration: Duration,
}

/// Reserves one password check for the address, atomically: every attempt is counted per email
/// address (palisade.count_login_attempt, migration 0030), whether or not an account has it, so
/// a wrong password for a real account and an unknown email do the same work and take as long.
/// The row lock serializes concurrent sign-ins; each reservation counts as a failure until a
/// success clears it, and once `threshold` are out the address is locked until the lock runs
/// out. Always one row: the account's id (or NULL) and, only when a check was reserved, its
/// hash; a locked or unknown account has none, so the caller checks the dummy hash and answers
/// as for a wrong password.
const RESERVE_LOGIN: &str = "SELECT u.id, CASE WHEN r.locks_now IS NOT NULL THEN u.password_hash END, \
        coalesce(r.locks_now, false) \
    FROM (SELECT palisade.count_login_attempt($1, $2, $3, $4) AS locks_now) r \
    LEFT JOIN palisade.users u ON u.email = $1";

/// The reservation's commit does not wait for the WAL flush: nothing is lost by it, as the
/// refusal's audit event (or the successful sign-in) commits synchronously afterwards, and
/// flushing the WAL up to that commit flushes the reservation too, before any answer leaves.
/// Counting stays atomic (the row lock). It saves one flush per sign-in, known email or not.
const ASYNC_COMMIT: &str = "SELECT set_config('synchronous_commit', 'off', true)";

/// Adds the reservation to the transaction: the credentials to check when a try was reserved,
/// and the account's id either way (for the audit trail when the account is locked).
pub fn reserve_login(
    tx: &mut Tx<Anonymous>,
    email: &Email,
    now: OffsetDateTime,
    rules: Lockout,
) -> Step<(Option<Credentials>, Option<UserId>)> {
    let reserved = tx.push(
        RESERVE_LOGIN,
        vec![
            Box::new(email.as_str().to_owned()),
            Box::new(now),
            Box::new(rules.threshold),
            Box::new(rules.duration.as_seconds_f64()),
        ],
        |rows| {
            let row = exactly_one(rows)?;
            let user_id: Option<uuid::Uuid> = row.get(0);
            let password_hash: Option<String> = row.get(1);
            let credentials = match (user_id, password_hash) {
                (Some(id), Some(password_hash)) => {
                    Some(Credentials { user_id: UserId::from_uuid(id), password_hash, locks_now: row.get(2) })
                }
                _ => None,
            };
            Ok((credentials, user_id.map(UserId::from_uuid)))
        },
    );
    tx.push_write(ASYNC_COMMIT, vec![]);
    reserved
}

const PRUNE_ATTEMPTS: &str = "SELECT palisade.prune_login_attempts($1, $2)";

/// Forgets runs of failed sign-ins whose last failure is older than `keep` and that hold no
/// running lock (addresses with and without accounts alike); returns how many.
pub async fn prune_login_attempts(db: &Db, now: OffsetDateTime, keep: Duration) -> Result<i64, StoreError> {
    let mut tx = Tx::<Anonymous>::anonymous();
    let removed = tx.push(PRUNE_ATTEMPTS, vec![Box::new(now), Box::new(keep.as_seconds_f64())], |rows| {
        Ok(exactly_one(rows)?.get(0))
    });
    tx.run(db).await?.get(removed)
}

const UPGRADE_HASH: &str = "UPDATE palisade.users SET password_hash = $3 WHERE id = $1 AND password_hash = $2";

/// Replaces a legacy hash after a successful sign-in (only if it is still the one we checked).
pub fn upgrade_hash<S>(tx: &mut Tx<S>, user: UserId, old_hash: &str, new_hash: String) {
    tx.push_write(UPGRADE_HASH, vec![Box::new(user.as_uuid()), Box::new(old_hash.to_owned()), Box::new(new_hash)]);
}

const CLEAR_FAILURES: &str = "SELECT palisade.clear_login_attempts($1)";

/// A successful sign-in ends the run of failures (and any lock it had just set).
pub fn clear_failures<S>(tx: &mut Tx<S>, user: UserId) {
    tx.push_write(CLEAR_FAILURES, vec![Box::new(user.as_uuid())]);
}

/// Creates the account unless the email is taken, and records `user.signup` either way, in one
/// statement, so a duplicate sign-up does the same work and leaves only an audit trace.
const SIGN_UP: &str = "WITH inserted AS ( \
        INSERT INTO palisade.users (id, email, name, password_hash, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email) DO NOTHING RETURNING id), \
    audit AS ( \
        INSERT INTO palisade.audit_events \
            (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) \
        SELECT $6, NULL, $5, \
               CASE WHEN i.id IS NOT NULL THEN 'user' END, i.id, 'user.signup', 'user', \
               coalesce(i.id, (SELECT u.id FROM palisade.users u WHERE u.email = $2)), \
               $7, $8, $9, \
               CASE WHEN i.id IS NOT NULL THEN 'success' ELSE 'failure' END, \
               CASE WHEN i.id IS NOT NULL THEN '{}'::jsonb ELSE '{\"reason\": \"email_taken\"}'::jsonb END \
        FROM (SELECT NULL) AS one LEFT JOIN inserted i ON true), \
    token AS ( \
        INSERT INTO palisade.email_tokens (token_hash, user_id, purpose, email, created_at, expires_at) \
        SELECT $10, i.id, 'verify_email', $2, $5, $5 + make_interval(secs => $11) FROM inserted i) \
    SELECT EXISTS (SELECT 1 FROM inserted)";

pub struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a Email,
    pub name: &'a PersonName,
    pub password_hash: String,
    pub at: OffsetDateTime,
    pub event: palisade_core::EventId,
    /// SHA-256 of the verification token emailed to a new account.
    pub verification: SessionTokenHash,
    pub verification_valid_for: Duration,
}

/// Returns true when a new account was created, false when the email was already taken.
pub fn sign_up(tx: &mut Tx<Anonymous>, user: NewUser<'_>, meta: &audit::RequestMeta) -> Step<bool> {
    tx.push(
        SIGN_UP,
        vec![
            Box::new(user.id.as_uuid()),
            Box::new(user.email.as_str().to_owned()),
            Box::new(user.name.as_str().to_owned()),
            Box::new(user.password_hash),
            Box::new(user.at),
            Box::new(user.event.as_uuid()),
            Box::new(meta.ip),
            Box::new(meta.user_agent.as_ref().map(|ua| ua.chars().take(512).collect::<String>())),
            Box::new(meta.request_id.clone()),
            Box::new(user.verification.0.to_vec()),
            Box::new(user.verification_valid_for.as_seconds_f64()),
        ],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}

pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub token_hash: SessionTokenHash,
    pub at: OffsetDateTime,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The first refresh token of the session's family, and how long the family may live.
    pub refresh_hash: SessionTokenHash,
    pub refresh_lifetime: Duration,
    /// Authentication methods used (RFC 8176), carried into access tokens.
    pub amr: Vec<&'static str>,
}

const INSERT_SESSION: &str = "INSERT INTO palisade.sessions \
    (id, user_id, token_hash, created_at, last_seen_at, expires_at, idle_timeout, ip, user_agent, refresh_expires_at, amr) \
    VALUES ($1, $2, $3, $4, $4, $5, make_interval(secs => $6), $7, $8, $9, $10)";

const INSERT_REFRESH: &str =
    "INSERT INTO palisade.refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)";

pub fn create_session(tx: &mut Tx<Anonymous>, session: NewSession) {
    tx.push_write(
        INSERT_SESSION,
        vec![
            Box::new(session.id.as_uuid()),
            Box::new(session.user_id.as_uuid()),
            Box::new(session.token_hash.0.to_vec()),
            Box::new(session.at),
            Box::new(session.at + session.lifetime),
            Box::new(session.idle_timeout.as_seconds_f64()),
            Box::new(session.ip),
            Box::new(session.user_agent.map(|ua| ua.chars().take(512).collect::<String>())),
            Box::new(session.at + session.refresh_lifetime),
            Box::new(session.amr),
        ],
    );
    tx.push_write(
        INSERT_REFRESH,
        vec![Box::new(session.refresh_hash.0.to_vec()), Box::new(session.id.as_uuid()), Box::new(session.at)],
    );
}

const REVOKE_CURRENT_SESSION: &str =
    "UPDATE palisade.sessions SET revoked_at = $1 WHERE id = palisade.current_session_id()";

/// Sign-out. The session exists: `enter_session` just verified it in the same transaction.
pub fn revoke_current_session(tx: &mut Tx<Authenticated>, at: OffsetDateTime) {
    tx.push_write(REVOKE_CURRENT_SESSION, vec![Box::new(at)]);
}

/// The signed-in user's own account.
pub struct Me {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub is_instance_admin: bool,
    pub created_at: OffsetDateTime,
}

const ME: &str = "SELECT id, email, name, is_instance_admin, created_at FROM palisade.users \
    WHERE id = palisade.current_user_id()";

pub fn me(tx: &mut Tx<Authenticated>) -> Step<Me> {
    tx.push(ME, vec![], |rows| {
        let row: Row = exactly_one(rows)?;
        Ok(Me {
            id: UserId::from_uuid(row.get(0)),
            email: row.get(1),
            name: row.get(2),
            is_instance_admin: row.get(3),
            created_at: row.get(4),
        })
    })
}

/// Unlocks an account early (instance administration, over the admin connection), audited.
pub async fn unlock(admin: &tokio_postgres::Client, email: &Email) -> Result<UserId, StoreError> {
    let rows = admin
        .query(
            "WITH account AS (SELECT id, email FROM palisade.users WHERE email = $1), \
             unlocked AS ( \
                 DELETE FROM palisade.login_attempts a USING account u \
                  WHERE a.email_digest = sha256(convert_to(u.email, 'UTF8'))), \
             audit AS ( \
                 INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, target_id, outcome, details) \
                 SELECT $2, NULL, now(), 'system', 'user.unlocked', 'user', u.id, 'success', '{\"via\": \"cli\"}' FROM account u) \
             SELECT id FROM account",
            &[&email.as_str(), &uuid::Uuid::now_v7()],
        )
        .await
        .map_err(StoreError::from_pg)?;
    rows.first().map(|row| UserId::from_uuid(row.get(0))).ok_or(StoreError::NotFound)
}

/// Instance administration runs over the admin connection, never through the API. The grant
/// and its audit event are one statement.
pub async fn grant_instance_admin(admin: &tokio_postgres::Client, email: &Email) -> Result<UserId, StoreError> {
    let rows = admin
        .query(
            "WITH granted AS ( \
                 UPDATE palisade.users SET is_instance_admin = true, updated_at = now() WHERE email = $1 RETURNING id), \
             audit AS ( \
                 INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, target_id, outcome, details) \
                 SELECT $2, NULL, now(), 'system', 'user.admin_granted', 'user', g.id, 'success', '{\"via\": \"cli\"}' FROM granted g) \
             SELECT id FROM granted",
            &[&email.as_str(), &uuid::Uuid::now_v7()],
        )
        .await
        .map_err(StoreError::from_pg)?;
    rows.first().map(|row| UserId::from_uuid(row.get(0))).ok_or(StoreError::NotFound)
}

/// One account from another system, its password as a bcrypt hash.
pub struct ImportedUser {
    pub email: Email,
    pub name: PersonName,
    pub bcrypt_hash: String,
    pub email_verified: bool,
}

impl std::fmt::Debug for ImportedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses, names and hashes stay out of debug output (and so out of logs).
        f.debug_struct("ImportedUser").field("email_verified", &self.email_verified).finish_non_exhaustive()
    }
}

/// Imports accounts in one transaction over the admin connection: all or nothing. An address
/// that already has an account is skipped (and counted). Each import is audited.
/// Returns (imported, skipped); `progress` is told how many were processed so far.
pub async fn import(
    admin: &mut tokio_postgres::Client,
    users: &[ImportedUser],
    mut progress: impl FnMut(usize),
) -> Result<(usize, usize), StoreError> {
    let tx = admin.transaction().await.map_err(StoreError::from_pg)?;
    let statement = tx
        .prepare(
            "WITH inserted AS ( \
                 INSERT INTO palisade.users (id, email, name, password_hash, email_verified_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END, now(), now()) \
                 ON CONFLICT (email) DO NOTHING RETURNING id), \
             audit AS ( \
                 INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, target_id, outcome, details) \
                 SELECT $6, NULL, now(), 'system', 'user.imported', 'user', i.id, 'success', '{\"hash\": \"bcrypt\"}' FROM inserted i) \
             SELECT count(*) FROM inserted",
        )
        .await
        .map_err(StoreError::from_pg)?;
    let mut imported = 0;
    for (done, user) in users.iter().enumerate() {
        let row = tx
            .query_one(
                &statement,
                &[
                    &uuid::Uuid::now_v7(),
                    &user.email.as_str(),
                    &user.name.as_str(),
                    &user.bcrypt_hash,
                    &user.email_verified,
                    &uuid::Uuid::now_v7(),
                ],
            )
            .await
            .map_err(StoreError::from_pg)?;
        imported += row.get::<_, i64>(0) as usize;
        progress(done + 1);
    }
    tx.commit().await.map_err(StoreError::from_pg)?;
    Ok((imported, users.len() - imported))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reservation commits without waiting for the WAL flush (the answer's own commit
    /// flushes it), and is one statement for known and unknown emails alike.
    #[test]
    fn the_reservation_commits_without_waiting_for_the_flush() {
        let mut tx = Tx::anonymous();
        let email = Email::parse("someone@example.com").unwrap();
        let _ = reserve_login(
            &mut tx,
            &email,
            OffsetDateTime::UNIX_EPOCH,
            Lockout { threshold: 6, duration: Duration::minutes(15) },
        );
        let statements = tx.statements();
        assert!(statements.contains(&RESERVE_LOGIN));
        assert!(statements.len() > 1, "a single statement would commit on its own, before the setting");
        assert!(statements.contains(&ASYNC_COMMIT), "{statements:?}");
    }
}
