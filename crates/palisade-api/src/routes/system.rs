//! Liveness, readiness and the problem-type documentation.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::problem::{ApiResult, CATALOG, Problem};

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "Database reachable and migrations current", body = Health),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<ApiState>) -> ApiResult<Json<Health>> {
    state.app.readiness().await?;
    Ok(Json(Health { status: "ready" }))
}

#[derive(Serialize, ToSchema)]
pub struct ProblemType {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub status: u16,
    pub title: &'static str,
    pub description: &'static str,
}

#[utoipa::path(get, path = "/problems/{slug}", tag = "system",
    params(("slug" = String, Path, description = "Problem type slug, e.g. not-found")),
    responses((status = 200, body = ProblemType), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn problem_type(Path(slug): Path<String>) -> ApiResult<Json<ProblemType>> {
    CATALOG
        .iter()
        .find(|(s, ..)| *s == slug)
        .map(|(s, status, title, description)| {
            Json(ProblemType { type_uri: format!("/problems/{s}"), status: *status, title, description })
        })
        .ok_or_else(|| Problem::new("not-found", "No such problem type.").into())
}

/// One public key (RFC 8037 OKP form).
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: &'static str,
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "system", responses(
    (status = 200, description = "The keys that verify access tokens now: the signing key and retired keys whose tokens may not have expired yet. A revoked key is gone at once.", body = JwkSet),
))]
pub async fn jwks(State(state): State<ApiState>) -> impl axum::response::IntoResponse {
    use base64::Engine;
    let keys = state
        .app
        .tokens
        .published()
        .into_iter()
        .map(|key| Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_key),
            kid: key.kid,
            alg: "EdDSA",
            use_: "sig",
        })
        .collect();
    // Short caching: verifiers elsewhere learn of a revocation within a minute.
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=60")], Json(JwkSet { keys }))
}
