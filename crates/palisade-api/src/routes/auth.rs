//! Sign-up, sign-in and sign-out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use palisade_app::{LoginInput, LoginOutcome, SignupInput};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, CSRF_COOKIE, Caller, Meta, SESSION_COOKIE, csrf_token_for};
use crate::problem::{ApiResult, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 12 to 256 characters, not easily guessed.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 256)]
    pub password: SecretString,
    #[schema(example = "Ada Lovelace")]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignupAccepted {
    pub message: &'static str,
}

/// Same answer whether or not the email was already registered.
pub const SIGNUP_MESSAGE: &str = "If this address can be registered, a confirmation link is on its way to it. Confirm it to create or join organizations.";

#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 202, description = "Accepted (the same answer for an email already registered)", body = SignupAccepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or weak input", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn signup(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignupAccepted>)> {
    state.app.sign_up(SignupInput { email: body.email, password: body.password, name: body.name }, &meta).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SignupAccepted { message: SIGNUP_MESSAGE })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A signed JWT (EdDSA, `typ: at+jwt`), verifiable with `/.well-known/jwks.json`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque and single use: `POST /api/v1/auth/refresh` answers with the next one.
    pub refresh_token: String,
}

impl From<palisade_app::TokenGrant> for TokenResponse {
    fn from(grant: palisade_app::TokenGrant) -> Self {
        TokenResponse {
            access_token: grant.access_token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: grant.expires_in,
            refresh_token: grant.refresh_token.expose_secret().to_owned(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in (sets the palisade_session and palisade_csrf cookies), or, for an account with a second factor, `{mfa_required, challenge_token, methods}`", body = TokenResponse),
        (status = 401, description = "Unknown email or wrong password (one answer)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    match state.app.log_in(LoginInput { email: body.email, password: body.password }, &meta).await? {
        LoginOutcome::Session(out) => Ok(session_response(&state, out)),
        LoginOutcome::MfaRequired { challenge, methods, webauthn } => Ok(axum::Json(MfaRequired {
            mfa_required: true,
            challenge_token: challenge.expose_secret().to_owned(),
            methods,
            webauthn,
        })
        .into_response()),
    }
}

/// The token response plus the browser cookies: `palisade_session` (HttpOnly, the session's
/// opaque cookie token) and `palisade_csrf`.
pub(crate) fn session_response(state: &ApiState, out: palisade_app::LoginOutput) -> Response {
    let cookie_token = out.session_token.expose_secret().to_owned();
    let max_age = time::Duration::seconds(out.cookie_max_age);
    let csrf = csrf_token_for(&cookie_token);
    let session = Cookie::build((SESSION_COOKIE, cookie_token))
        .http_only(true)
        .secure(state.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age);
    let csrf = Cookie::build((CSRF_COOKIE, csrf))
        .http_only(false)
        .secure(state.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age);
    let jar = CookieJar::new().add(session).add(csrf);
    (jar, axum::Json(TokenResponse::from(out.grant))).into_response()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "The next access token and refresh token (the presented one is used up)", body = TokenResponse),
        (status = 401, description = "Unknown, expired or already used refresh token; a reused one also ends its session", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let grant = state.app.refresh(&body.refresh_token, &meta).await?;
    Ok(axum::Json(grant.into()))
}

/// A correct password for an account with a second factor.
#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    /// Single use, 5 minutes; only `POST /api/v1/auth/mfa` accepts it.
    pub challenge_token: String,
    pub methods: Vec<&'static str>,
    /// With `webauthn` among the methods: pass `publicKey` to `navigator.credentials.get()`,
    /// then send the answer to `POST /api/v1/auth/webauthn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaRequest {
    pub challenge_token: String,
    /// The 6-digit code from the authenticator app, or a backup code (xxxx-xxxx-xxxx).
    pub code: String,
}

#[utoipa::path(post, path = "/api/v1/auth/mfa", tag = "auth", request_body = MfaRequest,
    responses(
        (status = 200, description = "Signed in; also sets the session cookies", body = TokenResponse),
        (status = 400, description = "Unknown, used or expired challenge", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong, reused or locked-out code", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn mfa(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<MfaRequest>,
) -> ApiResult<Response> {
    let out = state.app.complete_login_mfa(&body.challenge_token, &body.code, &meta).await?;
    Ok(session_response(&state, out))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Signed out; the session no longer works anywhere"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie request without its CSRF token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(State(state): State<ApiState>, caller: Caller, Meta(meta): Meta) -> ApiResult<Response> {
    state.app.log_out(&caller.proof, &meta).await?;
    let jar = CookieJar::new()
        .add(Cookie::build((SESSION_COOKIE, "")).path("/").max_age(time::Duration::ZERO))
        .add(Cookie::build((CSRF_COOKIE, "")).path("/").max_age(time::Duration::ZERO));
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the emailed link.
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 204, description = "The address is verified"),
        (status = 400, description = "Unknown, used or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_email(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<StatusCode> {
    state.app.verify_email(&body.token, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

/// Same answer whether or not the address has an account.
pub const FORGOT_MESSAGE: &str =
    "If this address has an account, a reset link is on its way. It works once, for 30 minutes.";

#[utoipa::path(post, path = "/api/v1/auth/forgot-password", tag = "auth", request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted (the same answer for an unknown address)", body = SignupAccepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn forgot_password(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignupAccepted>)> {
    state.app.forgot_password(&body.email, &meta).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SignupAccepted { message: FORGOT_MESSAGE })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub token: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 256)]
    pub password: SecretString,
}

#[utoipa::path(post, path = "/api/v1/auth/reset-password", tag = "auth", request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session of the account is signed out"),
        (status = 400, description = "Unknown, used or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Weak or invalid password (the link stays usable)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_password(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    state.app.reset_password(&body.token, body.password, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// A TOTP or backup code; required when the account has an authenticator app and no
    /// `webauthn` answer is given.
    pub code: Option<String>,
    /// A security key's answer to `POST /api/v1/auth/step-up/webauthn` (for accounts with keys).
    pub webauthn: Option<crate::routes::webauthn::WebauthnLoginRequest>,
}

#[utoipa::path(post, path = "/api/v1/auth/step-up", tag = "auth", request_body = StepUpRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Sensitive actions are allowed for the next 10 minutes"),
        (status = 401, description = "Wrong password or code (counts towards the lockout)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn step_up(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<StepUpRequest>,
) -> ApiResult<StatusCode> {
    let key = body.webauthn.map(|answer| (answer.challenge_token, answer.credential));
    state.app.step_up(&caller.proof, body.password, body.code, key, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/confirm-email-change", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 204, description = "The account now uses the new (verified) address"),
        (status = 400, description = "Unknown, used or expired link", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new address was taken meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirm_email_change(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<StatusCode> {
    state.app.confirm_email_change(&body.token, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
