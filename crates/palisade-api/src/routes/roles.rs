//! Custom roles and the access review.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_app::{ReviewRow, RoleInput};
use palisade_core::RoleId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::orgs::RoleResponse;
use crate::routes::rfc3339;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// Lower-case letters, digits and _; not a built-in role's name.
    #[schema(example = "site_supervisor")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Permission names from the matrix (GET …/roles); you must hold each one yourself.
    #[schema(example = json!(["org.read", "records.read_all", "records.update"]))]
    pub permissions: Vec<String>,
}

impl From<RoleRequest> for RoleInput {
    fn from(r: RoleRequest) -> Self {
        RoleInput { name: r.name, description: r.description, permissions: r.permissions }
    }
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/roles", tag = "orgs", request_body = RoleRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created; give it to a member with PATCH …/members/{user} {\"role\": \"rol_…\"}", body = RoleResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks roles.manage, or a permission the role would grant", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A role with that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RoleRequest>,
) -> ApiResult<(StatusCode, Json<RoleResponse>)> {
    let role = state.app.create_role(&caller.proof, org, body.into(), &meta).await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/roles/{role}", tag = "orgs", request_body = RoleRequest,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("role" = String, Path, description = "Custom role id (rol_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Replaced; members holding it get the new permissions on their next request", body = RoleResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, role): OrgAnd<RoleId>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RoleRequest>,
) -> ApiResult<Json<RoleResponse>> {
    Ok(Json(state.app.update_role(&caller.proof, org, role, body.into(), &meta).await?.into()))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/roles/{role}", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("role" = String, Path, description = "Custom role id (rol_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Members still hold it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, role): OrgAnd<RoleId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.delete_role(&caller.proof, org, role, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ReviewEntry {
    #[schema(example = "usr_01h455vb4pex5vsknk084sn02q")]
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// A built-in role, or "custom" (see `custom_role`).
    pub role: String,
    pub custom_role: Option<String>,
    pub custom_role_id: Option<String>,
    pub permissions: Vec<String>,
    /// Has a confirmed second factor.
    pub mfa: bool,
    /// Last use of any of the member's sessions (any organization), null if never.
    pub last_active_at: Option<String>,
    pub joined_at: String,
}

impl From<ReviewRow> for ReviewEntry {
    fn from(r: ReviewRow) -> Self {
        Self {
            user_id: r.user_id.to_string(),
            email: r.email,
            name: r.name,
            role: r.role,
            custom_role_id: r.custom_role.as_ref().map(|(id, _)| id.to_string()),
            custom_role: r.custom_role.map(|(_, name)| name),
            permissions: r.permissions,
            mfa: r.mfa,
            last_active_at: r.last_active_at.map(rfc3339),
            joined_at: rfc3339(r.joined_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AccessReview {
    pub generated_at: String,
    pub members: Vec<ReviewEntry>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/access-review", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)"),
        ("format" = Option<String>, Query, description = "json (default) or csv")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every member with role, permissions, second factor and last activity", body = AccessReview),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks members.manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn access_review(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let format = match query.as_deref() {
        None | Some("") | Some("format=json") => "json",
        Some("format=csv") => "csv",
        Some(_) => {
            return Err(palisade_app::AppError::InvalidQuery(vec![palisade_core::ValidationError {
                field: "format".into(),
                message: "use format=json or format=csv".into(),
            }])
            .into());
        }
    };
    let rows = state.app.access_review(&caller.proof, org).await?;
    let members: Vec<ReviewEntry> = rows.into_iter().map(Into::into).collect();
    if format == "json" {
        let generated_at = rfc3339(state.app.clock.now());
        return Ok(Json(AccessReview { generated_at, members }).into_response());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "user_id",
        "email",
        "name",
        "role",
        "custom_role",
        "permissions",
        "mfa",
        "last_active_at",
        "joined_at",
    ]);
    for m in &members {
        let _ = writer.write_record([
            m.user_id.as_str(),
            &m.email,
            &m.name,
            &m.role,
            m.custom_role.as_deref().unwrap_or(""),
            &m.permissions.join(" "),
            if m.mfa { "yes" } else { "no" },
            m.last_active_at.as_deref().unwrap_or(""),
            &m.joined_at,
        ]);
    }
    let mut response = writer.into_inner().unwrap_or_default().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"access-review.csv\""));
    Ok(response)
}
