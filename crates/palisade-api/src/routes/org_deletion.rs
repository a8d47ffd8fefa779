//! Deleting an organization: scheduled by an owner after a step-up, cancellable during the grace
//! period, then crypto-shredded (its keys destroyed in the key provider, its rows deleted).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{Caller, Meta, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct DeletionScheduled {
    /// When the organization's keys are destroyed and its data deleted, for good.
    pub deletion_due_at: String,
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "Scheduled; cancel before deletion_due_at with DELETE …/deletion", body = DeletionScheduled),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner, or a step-up is needed (POST /api/v1/auth/step-up)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already scheduled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn schedule(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
) -> ApiResult<(StatusCode, Json<DeletionScheduled>)> {
    let due = state.app.schedule_org_deletion(&caller.proof, org, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(DeletionScheduled { deletion_due_at: rfc3339(due) })))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/deletion", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "The scheduled deletion is cancelled"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or no deletion scheduled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.cancel_org_deletion(&caller.proof, org, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
