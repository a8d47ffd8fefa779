//! WebAuthn: registering, listing and removing security keys and passkeys; signing in with one,
//! as the second step after a password or without a password.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palisade_core::CredentialId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, IdPath, Meta};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct RegistrationStartResponse {
    /// Pass `publicKey` to `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    pub options: Value,
    /// Send back unchanged with the answer (sealed by the server; valid 5 minutes).
    pub state: String,
}

#[utoipa::path(post, path = "/api/v1/me/webauthn/register/start", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = RegistrationStartResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_registration(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<RegistrationStartResponse>> {
    let start = state.app.start_webauthn_registration(&caller.proof).await?;
    Ok(Json(RegistrationStartResponse { options: start.options, state: start.state }))
}

/// A `credential` is a JSON object, as the document says: anything else is refused with 422 even
/// where the server would not look at it (step-up of an account without keys).
fn json_object<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Object(map) => Ok(Value::Object(map)),
        _ => Err(serde::de::Error::custom("credential must be a JSON object")),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFinishRequest {
    /// What to call the key, e.g. "YubiKey 5" (1 to 100 characters, unique per user).
    pub name: String,
    pub state: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, as JSON.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "json_object")]
    pub credential: Value,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialResponse {
    #[schema(value_type = String, example = "wac_01h455vb4pex5vsknk084sn02q")]
    pub id: CredentialId,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<palisade_app::CredentialInfo> for CredentialResponse {
    fn from(c: palisade_app::CredentialInfo) -> Self {
        CredentialResponse {
            id: CredentialId::from_uuid(c.id),
            name: c.name,
            created_at: rfc3339(c.created_at),
            last_used_at: c.last_used_at.map(rfc3339),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/me/webauthn/register/finish", tag = "account",
    request_body = RegistrationFinishRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "The key is registered; sign-ins now ask for a second factor", body = CredentialResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Key already registered, or name already used", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad name, state or answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn finish_registration(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RegistrationFinishRequest>,
) -> ApiResult<(StatusCode, Json<CredentialResponse>)> {
    let created =
        state.app.finish_webauthn_registration(&caller.proof, &body.name, &body.state, body.credential, &meta).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/api/v1/me/webauthn", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Items<CredentialResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Items<CredentialResponse>>> {
    let items = state.app.list_webauthn_credentials(&caller.proof).await?;
    Ok(Json(Items { items: items.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/me/webauthn/{id}", tag = "account",
    params(("id" = String, Path, description = "wac_…")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticate again first (step-up)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(id): IdPath<CredentialId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.remove_webauthn_credential(&caller.proof, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebauthnLoginRequest {
    /// From the sign-in answer (`mfa_required`) or from `/api/v1/auth/passkey/start`.
    pub challenge_token: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    #[serde(deserialize_with = "json_object")]
    pub credential: Value,
}

#[utoipa::path(post, path = "/api/v1/auth/webauthn", tag = "auth", request_body = WebauthnLoginRequest,
    responses(
        (status = 200, description = "Signed in; also sets the session cookies", body = crate::routes::auth::TokenResponse),
        (status = 401, description = "Wrong key, unknown or used challenge, or locked account (one answer)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<WebauthnLoginRequest>,
) -> ApiResult<Response> {
    let out = state.app.complete_login_webauthn(&body.challenge_token, body.credential, &meta).await?;
    Ok(crate::routes::auth::session_response(&state, out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyStartRequest {
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyStartResponse {
    /// Send with the key's answer to `POST /api/v1/auth/webauthn`.
    pub challenge_token: String,
    /// Pass `publicKey` to `navigator.credentials.get()`.
    #[schema(value_type = Object)]
    pub options: Value,
}

#[utoipa::path(post, path = "/api/v1/auth/passkey/start", tag = "auth", request_body = PasskeyStartRequest,
    responses(
        (status = 200, description = "A sign-in ceremony (the same answer for an address without keys)", body = PasskeyStartResponse),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_passkey(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<PasskeyStartRequest>,
) -> ApiResult<Json<PasskeyStartResponse>> {
    let (challenge, options) = state.app.start_passwordless(&body.email, &meta).await?;
    Ok(Json(PasskeyStartResponse { challenge_token: challenge.expose_secret().to_owned(), options }))
}

#[utoipa::path(post, path = "/api/v1/auth/step-up/webauthn", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A ceremony over the caller's keys; send the answer with the password to POST /api/v1/auth/step-up", body = PasskeyStartResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No security key registered", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_step_up(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
) -> ApiResult<Json<PasskeyStartResponse>> {
    let (challenge, options) = state.app.start_step_up_webauthn(&caller.proof, &meta).await?;
    Ok(Json(PasskeyStartResponse { challenge_token: challenge.expose_secret().to_owned(), options }))
}
