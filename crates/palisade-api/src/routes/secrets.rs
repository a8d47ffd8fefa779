//! The organization's write-only secrets store: write, replace, delete, list names. No route
//! returns a value.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use palisade_app::SecretRow;
use palisade_core::SecretId;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// Starts with a letter; letters, digits, `_`, `.`, `-`; at most 100.
    #[schema(example = "stripe_api_key")]
    pub name: String,
    /// The secret (1 to 16384 bytes). Stored encrypted; never returned.
    #[schema(value_type = String, example = "sk_live_…")]
    pub value: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The new value (1 to 16384 bytes). Stored encrypted; never returned.
    #[schema(value_type = String, example = "sk_live_…")]
    pub value: SecretString,
}

/// A secret as lists show it: never its value.
#[derive(Serialize, ToSchema)]
pub struct SecretResponse {
    #[schema(value_type = String, example = "sec_01h455vb4pex5vsknk084sn02q")]
    pub id: SecretId,
    pub name: String,
    /// Starts at 1; each replace adds one.
    pub version: i32,
    /// The data key the value is encrypted under (`GET …/keys` lists them).
    pub key_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_by: Option<String>,
    pub updated_at: String,
}

impl From<SecretRow> for SecretResponse {
    fn from(s: SecretRow) -> Self {
        Self {
            id: s.id,
            name: s.name,
            version: s.version,
            key_id: s.key_id.map(palisade_app::keyring::data_key_label),
            created_by: s.created_by.map(|u| u.to_string()),
            created_at: rfc3339(s.created_at),
            updated_by: s.updated_by.map(|u| u.to_string()),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A secret's name in a path (any text: an unknown name is simply not found).
pub struct SecretName(pub String);

impl std::str::FromStr for SecretName {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretName(s.to_owned()))
    }
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/secrets", tag = "secrets", request_body = SecretRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Stored, encrypted under the organization's data key; the value is never returned", body = SecretResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks secrets.manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A secret of that name exists (replace it with PUT)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key provider is unavailable; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SecretRequest>,
) -> ApiResult<(StatusCode, Json<SecretResponse>)> {
    let secret = state.app.create_secret(&caller.proof, org, &body.name, body.value, &meta).await?;
    Ok((StatusCode::CREATED, Json(secret.into())))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/secrets", tag = "secrets",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Names and metadata, by name; never a value", body = Items<SecretResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<SecretResponse>>> {
    let secrets = state.app.list_secrets(&caller.proof, org).await?;
    Ok(Json(Items { items: secrets.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/secrets/{name}", tag = "secrets", request_body = SecretValue,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "The secret's name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Replaced; the value is never returned", body = SecretResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The key provider is unavailable; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, SecretName(name)): OrgAnd<SecretName>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SecretValue>,
) -> ApiResult<Json<SecretResponse>> {
    let secret = state.app.replace_secret(&caller.proof, org, &name, body.value, &meta).await?;
    Ok(Json(secret.into()))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/secrets/{name}", tag = "secrets",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "The secret's name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, SecretName(name)): OrgAnd<SecretName>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.delete_secret(&caller.proof, org, &name, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
