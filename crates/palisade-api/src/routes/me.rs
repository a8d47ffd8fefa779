//! The signed-in user's own account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use palisade_app::SessionInfo;
use palisade_core::{SessionId, UserId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{Caller, IdPath, Meta};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    #[schema(value_type = String, example = "usr_01h455vb4pex5vsknk084sn02q")]
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub is_instance_admin: bool,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = MeResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<MeResponse>> {
    let me = state.app.me(&caller.proof).await?;
    Ok(Json(MeResponse {
        id: me.id,
        email: me.email,
        name: me.name,
        is_instance_admin: me.is_instance_admin,
        created_at: rfc3339(me.created_at),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrollmentResponse {
    /// Base32 seed, for typing into an authenticator app. Shown once.
    pub secret: String,
    pub otpauth_uri: String,
    /// The otpauth URI as a QR code (SVG).
    pub qr_svg: String,
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Enrolment started; confirm with a code", body = TotpEnrollmentResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A confirmed authenticator is already enabled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_totp(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<TotpEnrollmentResponse>)> {
    let e = state.app.start_totp(&caller.proof).await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrollmentResponse { secret: e.secret, otpauth_uri: e.otpauth_uri, qr_svg: e.qr_svg }),
    ))
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    /// Ten single-use codes, shown once. Store them somewhere safe.
    pub backup_codes: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "account", request_body = TotpConfirmRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Two-factor authentication is on", body = BackupCodes),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong or reused code", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirm_totp(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    crate::extract::ApiJson(body): crate::extract::ApiJson<TotpConfirmRequest>,
) -> ApiResult<Json<BackupCodes>> {
    let backup_codes = state.app.confirm_totp(&caller.proof, &body.code, &meta).await?;
    Ok(Json(BackupCodes { backup_codes }))
}

#[derive(Serialize, ToSchema)]
pub struct SessionResponse {
    #[schema(value_type = String, example = "ses_01h455vb4pex5vsknk084sn02q")]
    pub id: SessionId,
    /// A label derived from the user agent, e.g. "Firefox on Linux".
    pub device: String,
    pub ip: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    /// This is the session making the request.
    pub current: bool,
}

/// A short, human label for a user agent string. Cosmetic only: it decides nothing.
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else { return "Unknown device".into() };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.into(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => ua.chars().take(40).collect(),
    }
}

impl From<SessionInfo> for SessionResponse {
    fn from(s: SessionInfo) -> Self {
        Self {
            id: s.id,
            device: device_label(s.user_agent.as_deref()),
            ip: s.ip.map(|ip| ip.to_string()),
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            current: s.current,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The caller's active sessions", body = Items<SessionResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sessions(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Items<SessionResponse>>> {
    let list = state.app.list_sessions(&caller.proof).await?;
    Ok(Json(Items { items: list.into_iter().map(SessionResponse::from).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{session}", tag = "account",
    params(("session" = String, Path, description = "Session id (ses_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked; it stops working on its next request"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not one of the caller's active sessions", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_session(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(id): IdPath<SessionId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.revoke_session(&caller.proof, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: i64,
}

#[utoipa::path(post, path = "/api/v1/me/sessions/revoke-others", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every other session of the caller is revoked", body = RevokedCount),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_other_sessions(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
) -> ApiResult<Json<RevokedCount>> {
    let revoked = state.app.revoke_other_sessions(&caller.proof, &meta).await?;
    Ok(Json(RevokedCount { revoked }))
}

#[utoipa::path(delete, path = "/api/v1/me/mfa/totp", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Two-factor authentication is off; backup codes are gone"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticate again first (step-up)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No authenticator to remove", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disable_totp(State(state): State<ApiState>, caller: Caller, Meta(meta): Meta) -> ApiResult<StatusCode> {
    state.app.disable_totp(&caller.proof, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 256)]
    pub password: secrecy::SecretString,
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", request_body = PasswordChange,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Password changed; every other session is signed out"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticate again first (step-up)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    crate::extract::ApiJson(body): crate::extract::ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    state.app.change_password(&caller.proof, body.password, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    pub email: String,
}

#[utoipa::path(post, path = "/api/v1/me/email", tag = "account", request_body = EmailChange,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "A confirmation link is on its way to the new address"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticate again first (step-up)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_email(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    crate::extract::ApiJson(body): crate::extract::ApiJson<EmailChange>,
) -> ApiResult<StatusCode> {
    state.app.request_email_change(&caller.proof, &body.email, &meta).await?;
    Ok(StatusCode::ACCEPTED)
}
