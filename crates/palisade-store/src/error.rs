//! The store's error type: database failures sorted into what the layers above can act on.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The session check inside the database failed (PA401).
    #[error("the session is not valid")]
    Unauthenticated,
    /// Not a member, or no such row (PA404 or an empty result where one row was expected).
    #[error("not found")]
    NotFound,
    /// The caller's role lacks the permission (PA403).
    #[error("permission denied")]
    Forbidden,
    /// A single-use token is unknown, used or expired (PA410).
    #[error("invalid or expired token")]
    InvalidToken,
    /// A one-time code or backup code was already used (PA409).
    #[error("already used")]
    Replayed,
    /// The action needs a recent authentication (PASU1).
    #[error("step-up authentication required")]
    StepUpRequired,
    /// An API key presented from an address outside its allow-list (PAIP1).
    #[error("address not allowed for this API key")]
    AddressNotAllowed,
    /// A second factor is required and the user has none (PAMF1).
    #[error("two-factor enrolment required")]
    MfaEnrollmentRequired,
    /// The account's email address is not verified yet (PAEV1).
    #[error("email address not verified")]
    EmailUnverified,
    /// An If-Match precondition failed: the record changed since it was read (PAIM1).
    #[error("the record changed since it was read")]
    VersionMismatch,
    /// The collection's schema (or its records) changed while a write was being checked (PASC1).
    #[error("the collection changed; retry")]
    SchemaChanged,
    /// An assignee is not a member of the organization (PAAS1).
    #[error("an assignee is not a member")]
    NotAMember,
    /// A per-organization quota is reached (PAQ01 collections, PAQ02 records or bytes).
    #[error("{0} quota reached")]
    QuotaExceeded(&'static str),
    /// A unique constraint refused the write.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// The database cannot take work now (pool exhausted, connection lost, timeout, disk full).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an unexpected database state.
    #[error("database error: {}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

impl StoreError {
    pub(crate) fn from_pg(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            return if err.is_closed() {
                StoreError::Unavailable("connection closed".into())
            } else if let Some(advice) = crate::tls::certificate_advice(&err) {
                StoreError::Unavailable(format!("connection failed: {err}. {advice}"))
            } else if is_io(&err) {
                // The server cannot be reached or the connection broke (refused, reset, no socket:
                // the database is down or restarting). Nothing was committed that we were told of.
                StoreError::Unavailable(format!("connection failed: {err}"))
            } else {
                StoreError::Database(err)
            };
        };
        let code = db.code();
        match code.code() {
            "PA401" => StoreError::Unauthenticated,
            "PA404" => StoreError::NotFound,
            "PA403" => StoreError::Forbidden,
            "PA410" => StoreError::InvalidToken,
            "PA409" => StoreError::Replayed,
            "PA412" => StoreError::Conflict { constraint: "last_owner".into() },
            "PAKR1" => StoreError::Conflict { constraint: "rotation_running".into() },
            "PADL1" => StoreError::Conflict { constraint: "deletion_scheduled".into() },
            "PAKG1" => StoreError::Conflict { constraint: "data_key_gone".into() },
            "PAEV1" => StoreError::EmailUnverified,
            "PASU1" => StoreError::StepUpRequired,
            "PAMF1" => StoreError::MfaEnrollmentRequired,
            "PAIP1" => StoreError::AddressNotAllowed,
            "PAIM1" => StoreError::VersionMismatch,
            "PASC1" => StoreError::SchemaChanged,
            "PAAS1" => StoreError::NotAMember,
            "PAQ01" => StoreError::QuotaExceeded("collection"),
            "PAQ02" => StoreError::QuotaExceeded("record"),
            // A write that would leave the row outside the caller's own policies (e.g. record scope).
            _ if *code == SqlState::INSUFFICIENT_PRIVILEGE && db.message().contains("row-level security") => {
                StoreError::Forbidden
            }
            _ if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::FOREIGN_KEY_VIOLATION => {
                StoreError::Conflict { constraint: db.constraint().unwrap_or("unknown").to_owned() }
            }
            // Statement timeout, lock timeout, out of disk, too many connections, shutting down.
            _ if *code == SqlState::QUERY_CANCELED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || code.code().starts_with("53")
                || code.code().starts_with("57P")
                || code.code().starts_with("08") =>
            {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Database(err),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(pg) => StoreError::from_pg(pg),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Whether an I/O error (connect, read or write on the socket) caused this one.
fn is_io(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// tokio-postgres's Display says only "db error"; the log needs the code and message.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!(
            "{} {}{}",
            db.code().code(),
            db.message(),
            db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        None => format!("{err:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that is down (nothing listens on the socket) is "unavailable" (503), not a bug (500).
    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let dir = std::env::temp_dir().join(format!("palisade-no-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A socket file nobody accepts on: connect gets ECONNREFUSED, like after a postmaster crash.
        let path = dir.join(".s.PGSQL.5432");
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut config = tokio_postgres::Config::new();
        config.host_path(&dir).port(5432).user("nobody").dbname("nothing");
        let err = config.connect(tokio_postgres::NoTls).await.err().expect("nothing listens there");
        assert!(matches!(StoreError::from_pg(err), StoreError::Unavailable(_)));
        // The same through the pool, as the server meets it.
        let db = crate::Db::connect(config, 1).unwrap();
        assert!(matches!(db.client().await.err(), Some(StoreError::Unavailable(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
