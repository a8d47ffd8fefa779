//! Instance administration over the API: organizations' plan tiers.

use axum::extract::State;
use axum::http::StatusCode;
use palisade_core::Plan;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgPath};
use crate::problem::{ApiResult, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// `standard`, `professional` or `enterprise`: sets the request budgets of the organization's
    /// members and API keys (`[rate_limits]`).
    #[schema(value_type = String, example = "enterprise")]
    pub plan: Plan,
}

#[utoipa::path(put, path = "/api/v1/admin/orgs/{org}/plan", tag = "admin", request_body = PlanRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Set; every node applies it within 30 s"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_plan(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<PlanRequest>,
) -> ApiResult<StatusCode> {
    state.app.set_org_plan(&caller.proof, org, body.plan, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
