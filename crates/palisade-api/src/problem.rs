//! RFC 9457 problem details. Every error response is `application/problem+json` with a stable
//! `type`; a 500 shows only an error id that is also in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_app::AppError;
use palisade_core::ValidationError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every problem type this API emits: (slug, status, title, when it happens).
/// The `type` URI is `/problems/<slug>`; `GET /problems/<slug>` describes it.
pub const CATALOG: &[(&str, u16, &str, &str)] = &[
    ("invalid-json", 400, "Malformed JSON", "The body is not valid JSON."),
    ("json-too-deep", 400, "JSON nested too deeply", "Arrays and objects in the body nest deeper than 32 levels."),
    (
        "invalid-query",
        400,
        "Invalid query parameters",
        "A filter, sort, limit or cursor cannot be used: an unknown or sensitive field, a value of the wrong type, an unknown operator, or a cursor from another listing. `errors` names each parameter.",
    ),
    (
        "invalid-token",
        400,
        "Invalid or expired link",
        "The single-use link (email verification, password reset) is unknown, already used or expired. Ask for a new one.",
    ),
    (
        "unauthenticated",
        401,
        "Not signed in",
        "No credentials, or credentials that are not valid (expired, revoked, unknown).",
    ),
    (
        "invalid-credentials",
        401,
        "Invalid email or password",
        "Sign-in failed. Unknown email and wrong password give this same answer.",
    ),
    ("forbidden", 403, "Permission denied", "Signed in and a member, but the role lacks the permission."),
    (
        "step-up-required",
        403,
        "Authenticate again",
        "This action needs a sign-in within the last 10 minutes: POST /api/v1/auth/step-up with your password (and code), then retry.",
    ),
    (
        "address-not-allowed",
        403,
        "Address not allowed",
        "The API key has an IP allow-list that does not include the address the request came from.",
    ),
    (
        "mfa-enrollment-required",
        403,
        "Two-factor authentication required",
        "This organization requires two-factor authentication: set it up (POST /api/v1/me/mfa/totp), then retry.",
    ),
    (
        "email-unverified",
        403,
        "Email not verified",
        "Confirm your email address (the link in the sign-up email) before creating or joining an organization.",
    ),
    (
        "cors-origin-not-allowed",
        403,
        "Origin not allowed",
        "A browser preflight from an origin the organization has not allow-listed (cors_origins), or to a route that never allows cross-origin calls.",
    ),
    (
        "csrf-failed",
        403,
        "CSRF check failed",
        "A state-changing request authenticated by cookie lacks the X-CSRF-Token header matching the palisade_csrf cookie.",
    ),
    (
        "not-found",
        404,
        "Not found",
        "No such resource, or not one the caller can see. Another organization's ids answer this too.",
    ),
    ("method-not-allowed", 405, "Method not allowed", "The path exists but not with this method."),
    ("request-timeout", 408, "Request timeout", "The request took too long."),
    (
        "overloaded",
        503,
        "Overloaded",
        "Too many requests are in flight on this node; retry after the Retry-After seconds.",
    ),
    ("conflict", 409, "Conflict", "The change conflicts with the current state."),
    (
        "schema-incompatible",
        409,
        "Existing records break the new schema",
        "The schema change is refused because existing records would not validate; `record_ids` lists them and `errors` their violations. Fix the records, or send `defaults` for missing fields.",
    ),
    (
        "quota-exceeded",
        409,
        "Quota exceeded",
        "The organization holds as many of these as its quota allows; delete some or ask the operator to raise the quota.",
    ),
    (
        "precondition-failed",
        412,
        "Precondition failed",
        "If-Match does not name the current version (ETag) of the resource: it changed since you read it. Read it again, then retry.",
    ),
    ("payload-too-large", 413, "Payload too large", "The body exceeds the size limit."),
    (
        "rate-limited",
        429,
        "Too many requests",
        "A rate limit was reached. Retry after the number of seconds in Retry-After.",
    ),
    ("unsupported-media-type", 415, "Unsupported media type", "Send the body as application/json."),
    (
        "validation",
        422,
        "Invalid input",
        "The JSON is well formed but a field is missing, unknown, of the wrong type or not acceptable; `errors` lists each with its JSON pointer.",
    ),
    ("internal", 500, "Internal error", "Something failed on our side. Quote `error_id` when reporting it."),
    (
        "undecryptable",
        500,
        "Stored data cannot be decrypted",
        "An encrypted value (a record's sensitive fields, a secret) is damaged or was copied from another row or organization, or its key was destroyed. `detail` names it; restore it from a backup.",
    ),
    ("busy", 503, "Busy", "A bounded queue is full. Retry after the number of seconds in Retry-After."),
    (
        "unavailable",
        503,
        "Service unavailable",
        "A dependency (the database, or the key provider that holds encryption keys) cannot take work right now; nothing was written.",
    ),
];

/// One field-level error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer to the field, e.g. `/email`.
    pub pointer: String,
    pub detail: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the problem type, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `schema-incompatible`: the records that would break.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub record_ids: Vec<String>,
    /// Present on 500 only; the same id is in the server log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

impl Problem {
    pub fn new(slug: &str, detail: impl Into<String>) -> Self {
        let (status, title) = CATALOG
            .iter()
            .find(|(s, ..)| *s == slug)
            .map(|(_, status, title, _)| (*status, *title))
            .unwrap_or((500, "Internal error"));
        Self {
            type_uri: format!("/problems/{slug}"),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: vec![],
            record_ids: vec![],
            error_id: None,
        }
    }

    pub fn validation(errors: Vec<ValidationError>) -> Self {
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let mut problem = Problem::new("validation", detail);
        problem.errors = errors.into_iter().map(|e| FieldError { pointer: e.field, detail: e.message }).collect();
        problem
    }

    /// A 500 that reveals nothing but an id; the cause goes to the log under that id.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let error_id = format!("err_{}", uuid::Uuid::new_v4().simple());
        tracing::error!(error_id = %error_id, cause = %cause, "internal error");
        let mut problem =
            Problem::new("internal", format!("An internal error occurred; quote {error_id} when reporting it."));
        problem.error_id = Some(error_id);
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.status == 503 || self.status == 429;
        let unauthenticated = self.status == 401;
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Handler error type: a use-case error, rendered as a problem.
pub struct ApiError(pub Problem);

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError(problem)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        ApiError(match err {
            AppError::Validation(errors) => Problem::validation(errors),
            AppError::InvalidCredentials => {
                Problem::new("invalid-credentials", "The email or password is not correct.")
            }
            AppError::Unauthenticated => Problem::new("unauthenticated", "Sign in again: the session is not valid."),
            AppError::NotFound => Problem::new("not-found", "No such resource."),
            AppError::Forbidden => Problem::new("forbidden", "Your role does not allow this action."),
            AppError::StepUpRequired => Problem::new(
                "step-up-required",
                "Confirm it is you: POST /api/v1/auth/step-up with your password (and code), then retry within 10 minutes.",
            ),
            AppError::AddressNotAllowed => Problem::new(
                "address-not-allowed",
                "This API key may not be used from your address; use it from an address in its allow-list.",
            ),
            AppError::MfaEnrollmentRequired => Problem::new(
                "mfa-enrollment-required",
                "This organization requires two-factor authentication: set it up under your account, then retry.",
            ),
            AppError::InvalidToken => {
                Problem::new("invalid-token", "This link is invalid, expired or already used; ask for a new one.")
            }
            AppError::EmailUnverified => Problem::new(
                "email-unverified",
                "Confirm your email address first: open the link in the email we sent when you signed up.",
            ),
            AppError::Conflict(why) => Problem::new("conflict", format!("{why}.")),
            AppError::PreconditionFailed => Problem::new(
                "precondition-failed",
                "The record changed since you read it (If-Match names an older version); read it again and retry.",
            ),
            AppError::PayloadTooLarge(why) => Problem::new("payload-too-large", why),
            AppError::QuotaExceeded(why) => Problem::new("quota-exceeded", why),
            AppError::InvalidQuery(errors) => {
                let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                let mut problem = Problem::new("invalid-query", detail);
                problem.errors =
                    errors.into_iter().map(|e| FieldError { pointer: e.field, detail: e.message }).collect();
                problem
            }
            AppError::Busy(detail) => Problem::new("busy", detail),
            AppError::Unavailable(why) => {
                tracing::warn!(cause = %why, "dependency unavailable");
                Problem::new(
                    "unavailable",
                    "A dependency (the database or the key provider) is not available right now; nothing was written. Retry shortly.",
                )
            }
            AppError::Undecryptable(what) => {
                tracing::error!(what = %what, "stored ciphertext does not decrypt");
                Problem::new(
                    "undecryptable",
                    format!("{what} cannot be decrypted: damaged, moved or shredded. Restore it from a backup."),
                )
            }
            AppError::Internal(cause) => Problem::internal(&cause),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
