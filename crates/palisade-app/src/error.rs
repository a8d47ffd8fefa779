//! The use-case error: what went wrong in terms the API can map to a problem type.

use palisade_core::ValidationError;
use palisade_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input")]
    Validation(Vec<ValidationError>),
    /// Unknown email or wrong password: deliberately one answer.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("not signed in")]
    Unauthenticated,
    /// Missing, not visible to the caller, or in another tenant: deliberately one answer.
    #[error("not found")]
    NotFound,
    #[error("permission denied")]
    Forbidden,
    /// A single-use link is unknown, used or expired.
    #[error("invalid or expired token")]
    InvalidToken,
    /// The action needs an authentication within the last 10 minutes.
    #[error("step-up required")]
    StepUpRequired,
    /// An API key used from an address its allow-list does not name.
    #[error("address not allowed for this API key")]
    AddressNotAllowed,
    /// The organization requires a second factor the user has not set up.
    #[error("two-factor enrolment required")]
    MfaEnrollmentRequired,
    /// The action needs a verified email address.
    #[error("email address not verified")]
    EmailUnverified,
    /// An If-Match precondition failed: the resource changed since the caller read it.
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// A per-organization quota is reached.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// Query parameters (filters, sort, limit, cursor) that cannot be used; each names its parameter.
    #[error("invalid query")]
    InvalidQuery(Vec<ValidationError>),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bounded queue is full; try again shortly. Says which, in words for the caller.
    #[error("busy: {0}")]
    Busy(&'static str),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A stored ciphertext that does not open (damaged, moved between rows or tenants, or its
    /// key shredded); names what it belongs to, never any content.
    #[error("{0} cannot be decrypted")]
    Undecryptable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ValidationError> for AppError {
    fn from(err: ValidationError) -> Self {
        AppError::Validation(vec![err])
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unauthenticated => AppError::Unauthenticated,
            StoreError::NotFound => AppError::NotFound,
            StoreError::Forbidden => AppError::Forbidden,
            StoreError::InvalidToken => AppError::InvalidToken,
            StoreError::Replayed => AppError::InvalidCredentials,
            StoreError::StepUpRequired => AppError::StepUpRequired,
            StoreError::MfaEnrollmentRequired => AppError::MfaEnrollmentRequired,
            StoreError::AddressNotAllowed => AppError::AddressNotAllowed,
            StoreError::EmailUnverified => AppError::EmailUnverified,
            StoreError::Conflict { constraint } => {
                // The constraint's name is for the log, not for the client.
                tracing::debug!(constraint = %constraint, "write refused by a constraint");
                AppError::Conflict("the change conflicts with the current state; reload and retry".into())
            }
            StoreError::VersionMismatch => AppError::PreconditionFailed,
            StoreError::SchemaChanged => AppError::Conflict("the collection changed; retry".into()),
            StoreError::NotAMember => {
                AppError::Validation(vec![ValidationError::new("assignees", "every assignee must be a member")])
            }
            StoreError::QuotaExceeded(what) => AppError::QuotaExceeded(format!(
                "the organization's {what} quota is reached; delete some, or ask the operator to raise it"
            )),
            StoreError::Unavailable(why) => AppError::Unavailable(why),
            other @ StoreError::Database(_) => AppError::Internal(other.to_string()),
        }
    }
}

impl From<palisade_auth::HashError> for AppError {
    fn from(err: palisade_auth::HashError) -> Self {
        match err {
            palisade_auth::HashError::Busy => AppError::Busy("Too many sign-ins are being processed; retry shortly."),
            palisade_auth::HashError::Internal(why) => AppError::Internal(why),
        }
    }
}
