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
