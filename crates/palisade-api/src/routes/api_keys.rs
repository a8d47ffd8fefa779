//! Organization API keys: create (secret shown once), list, revoke, rotate.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use palisade_app::{ApiKeyInput, ApiKeyRow, IssuedApiKey};
use palisade_core::ApiKeyId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    #[schema(example = "nightly export")]
    pub name: String,
    /// Permission names (GET …/roles); you must hold each one yourself.
    #[schema(example = json!(["records.read_all", "records.create"]))]
    pub permissions: Vec<String>,
    /// RFC 3339 time after which the key stops working; omit or null for none.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, example = "2027-06-30T00:00:00Z")]
    pub expires_at: Option<OffsetDateTime>,
    /// Addresses or CIDR networks the key may be used from; omit or null for any.
    #[serde(default)]
    #[schema(example = json!(["203.0.113.0/24"]))]
    pub allowed_ips: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyResponse {
    #[schema(value_type = String, example = "key_01h455vb4pex5vsknk084sn02q")]
    pub id: ApiKeyId,
    pub name: String,
    /// The start of the key, to tell keys apart (`pal_live_` and 8 characters).
    #[schema(example = "pal_live_7Qe3xKf9")]
    pub prefix: String,
    /// Its scopes as granted; on each request they are cut down to the creator's current role.
    pub permissions: Vec<String>,
    pub allowed_ips: Option<Vec<String>>,
    /// The member who created (or last rotated) it (usr_…).
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<String>,
    /// The key this one replaced, when it came from a rotation.
    pub rotated_from: Option<String>,
}

impl From<ApiKeyRow> for ApiKeyResponse {
    fn from(k: ApiKeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            permissions: k.permissions,
            allowed_ips: k.allowed_ips,
            created_by: k.created_by.to_string(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            last_used_ip: k.last_used_ip,
            revoked_at: k.revoked_at.map(rfc3339),
            rotated_from: k.rotated_from.map(|id| id.to_string()),
        }
    }
}

/// A new key with its secret: the only time the secret is ever shown.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKeyResponse {
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// Use as `Authorization: Bearer <secret>`. Store it now: it is not shown again.
    #[schema(example = "pal_live_7Qe3xKf9…")]
    pub secret: String,
}

impl From<IssuedApiKey> for IssuedApiKeyResponse {
    fn from(issued: IssuedApiKey) -> Self {
        Self { secret: issued.secret.expose_secret().to_owned(), key: issued.key.into() }
    }
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/api-keys", tag = "api-keys", request_body = ApiKeyRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created; the secret is in this answer only", body = IssuedApiKeyResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks api_keys.manage or a permission the key would grant, or needs a step-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<IssuedApiKeyResponse>)> {
    let input = ApiKeyInput {
        name: body.name,
        permissions: body.permissions,
        expires_at: body.expires_at,
        allowed_ips: body.allowed_ips,
    };
    let issued = state.app.create_api_key(&caller.proof, org, input, &meta).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/api-keys", tag = "api-keys",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every key, active first; never a secret", body = Items<ApiKeyResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<ApiKeyResponse>>> {
    let keys = state.app.list_api_keys(&caller.proof, org).await?;
    Ok(Json(Items { items: keys.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/api-keys/{key}", tag = "api-keys",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("key" = String, Path, description = "API key id (key_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked: the key stops working on its next request"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, id): OrgAnd<ApiKeyId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.revoke_api_key(&caller.proof, org, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Minutes the old secret keeps working (0–10080); default 1440 (a day).
    #[serde(default = "default_overlap")]
    #[schema(example = 60)]
    pub overlap_minutes: i64,
}

fn default_overlap() -> i64 {
    24 * 60
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/api-keys/{key}/rotate", tag = "api-keys", request_body = RotateRequest,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("key" = String, Path, description = "API key id (key_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "The successor key with its secret (shown once); the old secret works until the overlap ends", body = IssuedApiKeyResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key, or it is revoked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, id): OrgAnd<ApiKeyId>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RotateRequest>,
) -> ApiResult<(StatusCode, Json<IssuedApiKeyResponse>)> {
    let issued = state.app.rotate_api_key(&caller.proof, org, id, body.overlap_minutes, &meta).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}
