//! Organizations (the tenant) and their members.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_app::{Member, Org, OrgPatch};
use palisade_core::{OrgId, OrgRole, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct OrgResponse {
    #[schema(value_type = String, example = "org_01h455vb4pex5vsknk084sn02q")]
    pub id: OrgId,
    pub name: String,
    /// The caller's role in this organization.
    #[schema(value_type = Option<String>, example = "owner")]
    pub role: Option<OrgRole>,
    pub created_at: String,
    pub updated_at: String,
    /// Inactivity timeout for this organization in minutes; null = the instance default.
    pub session_idle_minutes: Option<i64>,
    /// "off", "admins" or "all".
    pub mfa_policy: String,
    /// The plan tier (`standard`, `professional`, `enterprise`), which sets request budgets;
    /// only in the answer for one organization.
    #[schema(value_type = Option<String>, example = "standard")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<palisade_core::Plan>,
    /// Days audit events are kept (365 to 36500; default 730). Absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<i32>,
    /// While true, no audit event is purged. Absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
    /// Browser origins allowed to call this organization's API routes (CORS). Absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["https://app.example.com"]))]
    pub cors_origins: Option<Vec<String>>,
    /// Set while the organization is scheduled for deletion: when its keys are destroyed and
    /// its data deleted (cancel before then with DELETE …/deletion). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_due_at: Option<String>,
}

impl From<Org> for OrgResponse {
    fn from(org: Org) -> Self {
        Self {
            id: org.id,
            name: org.name,
            role: org.my_role,
            created_at: rfc3339(org.created_at),
            updated_at: rfc3339(org.updated_at),
            session_idle_minutes: org.session_idle_minutes,
            mfa_policy: org.mfa_policy,
            plan: org.plan,
            audit_retention_days: org.audit_retention_days,
            legal_hold: org.legal_hold,
            cors_origins: org.cors_origins,
            deletion_due_at: org.deletion_due_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    #[schema(example = "Acme Field Services")]
    pub name: String,
}

#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrgRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created; the caller is its owner", body = OrgResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<CreateOrgRequest>,
) -> ApiResult<Response> {
    let org = state.app.create_org(&caller.proof, &body.name, &meta).await?;
    let location = HeaderValue::from_str(&format!("/api/v1/orgs/{}", org.id)).ok();
    let mut response = (StatusCode::CREATED, Json(OrgResponse::from(org))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The organizations the caller belongs to", body = Items<OrgResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Items<OrgResponse>>> {
    let orgs = state.app.list_orgs(&caller.proof).await?;
    Ok(Json(Items { items: orgs.into_iter().map(OrgResponse::from).collect() }))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = OrgResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not a member (one answer)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(state): State<ApiState>, caller: Caller, OrgPath(org): OrgPath) -> ApiResult<Json<OrgResponse>> {
    Ok(Json(state.app.get_org(&caller.proof, org).await?.into()))
}

/// Distinguishes an absent field (`None`) from an explicit null (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgRequest {
    pub name: Option<String>,
    /// 5 to 1440 minutes of inactivity before a session stops working here; null = default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 1440)]
    pub session_idle_minutes: Option<Option<i64>>,
    /// Who must use a second factor here: "off", "admins" (owners and admins) or "all". Turning
    /// it on needs the caller to have a second factor.
    pub mfa_policy: Option<String>,
    /// Days audit events are kept before the daily purge removes them (365 to 36500).
    pub audit_retention_days: Option<i64>,
    /// Stops every purge of this organization's audit events while true.
    pub legal_hold: Option<bool>,
    /// Browser origins (`https://app.example.com`) allowed to call this organization's API
    /// routes with a bearer token or API key (CORS); `[]` for none. At most 20.
    #[schema(example = json!(["https://app.example.com"]))]
    pub cors_origins: Option<Vec<String>>,
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "orgs", request_body = UpdateOrgRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = OrgResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role is not owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<UpdateOrgRequest>,
) -> ApiResult<Json<OrgResponse>> {
    let patch = OrgPatch {
        name: body.name,
        session_idle_minutes: body.session_idle_minutes,
        mfa_policy: body.mfa_policy,
        audit_retention_days: body.audit_retention_days,
        legal_hold: body.legal_hold,
        cors_origins: body.cors_origins,
    };
    let updated = state.app.update_org(&caller.proof, org, patch, &meta).await?;
    Ok(Json(updated.into()))
}

#[derive(Serialize, ToSchema)]
pub struct MemberResponse {
    #[schema(value_type = String, example = "usr_01h455vb4pex5vsknk084sn02q")]
    pub user_id: UserId,
    pub name: String,
    pub email: String,
    #[schema(value_type = Option<String>, example = "member")]
    pub role: Option<OrgRole>,
    pub joined_at: String,
}

impl From<Member> for MemberResponse {
    fn from(m: Member) -> Self {
        Self { user_id: m.user_id, name: m.name, email: m.email, role: m.role, joined_at: rfc3339(m.joined_at) }
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Items<MemberResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn members(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<MemberResponse>>> {
    let members = state.app.list_members(&caller.proof, org).await?;
    Ok(Json(Items { items: members.into_iter().map(MemberResponse::from).collect() }))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/members/{user}/revoke-sessions", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("user" = String, Path, description = "Member's user id (usr_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "The member's current sessions no longer open this organization"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not owner/admin, or the member is an owner and the caller is not", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_member_sessions(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, user): OrgAnd<UserId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.revoke_member_sessions(&caller.proof, org, user, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RoleResponse {
    /// A custom role's id (`rol_…`), to give it to a member; absent for built-in roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[schema(example = "manager")]
    pub name: String,
    /// Built-in roles cannot be changed; custom roles are the organization's own.
    pub builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(example = json!(["org.read", "records.read_all"]))]
    pub permissions: Vec<String>,
    /// Members holding a custom role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
}

impl From<palisade_app::CustomRole> for RoleResponse {
    fn from(r: palisade_app::CustomRole) -> Self {
        Self {
            id: Some(r.id.to_string()),
            name: r.name,
            builtin: false,
            description: Some(r.description),
            permissions: r.permissions,
            members: Some(r.members),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/roles", tag = "orgs",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every role and its permissions (see docs/permissions.md)", body = Items<RoleResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn roles(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<RoleResponse>>> {
    let (builtin, custom) = state.app.list_all_roles(&caller.proof, org).await?;
    Ok(Json(Items {
        items: builtin
            .into_iter()
            .map(|(role, permissions)| RoleResponse {
                id: None,
                name: role.as_str().to_owned(),
                builtin: true,
                description: None,
                permissions: permissions.into_iter().map(|p| p.as_str().to_owned()).collect(),
                members: None,
            })
            .chain(custom.into_iter().map(Into::into))
            .collect(),
    }))
}
