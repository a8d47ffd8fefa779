//! Members: invitations, role changes, removal.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use palisade_app::Invitation;
use palisade_core::{InvitationId, OrgId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct InvitationResponse {
    #[schema(value_type = String, example = "inv_01h455vb4pex5vsknk084sn02q")]
    pub id: InvitationId,
    pub email: String,
    #[schema(value_type = Option<String>, example = "contractor")]
    pub role: Option<palisade_core::OrgRole>,
    pub created_at: String,
    pub expires_at: String,
}

impl From<Invitation> for InvitationResponse {
    fn from(i: Invitation) -> Self {
        Self {
            id: i.id,
            email: i.email,
            role: i.role,
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    #[schema(example = "sam@example.com")]
    pub email: String,
    #[schema(example = "contractor")]
    pub role: String,
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "members", request_body = InviteRequest,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Invited; the link (single use, 7 days) is emailed", body = InvitationResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks members.manage, or the role is above the caller's own", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn invite(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<InvitationResponse>)> {
    let invitation = state.app.invite_member(&caller.proof, org, &body.email, &body.role, &meta).await?;
    Ok((StatusCode::CREATED, Json(invitation.into())))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "members",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Pending invitations", body = Items<InvitationResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn invitations(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<InvitationResponse>>> {
    let list = state.app.list_invitations(&caller.proof, org).await?;
    Ok(Json(Items { items: list.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{invitation}", tag = "members",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("invitation" = String, Path, description = "Invitation id (inv_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked: the link no longer works"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_invitation(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, id): OrgAnd<InvitationId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.revoke_invitation(&caller.proof, org, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token from the emailed link.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Joined {
    #[schema(value_type = String, example = "org_01h455vb4pex5vsknk084sn02q")]
    pub org_id: OrgId,
    #[schema(value_type = Option<String>, example = "contractor")]
    pub role: Option<palisade_core::OrgRole>,
}

#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "members", request_body = AcceptRequest,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Joined the organization", body = Joined),
        (status = 400, description = "Unknown, used, revoked or expired invitation, or not for this account's address", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Email address not verified", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accept(
    State(state): State<ApiState>,
    caller: Caller,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> ApiResult<Json<Joined>> {
    let (org_id, role) = state.app.accept_invitation(&caller.proof, &body.token, &meta).await?;
    Ok(Json(Joined { org_id, role }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    #[schema(example = "manager")]
    pub role: String,
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user}", tag = "members", request_body = RoleChange,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("user" = String, Path, description = "Member's user id (usr_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Role changed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks members.manage, grants above own role, or touches an owner without being one", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The organization would be left without an owner", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_role(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, user): OrgAnd<UserId>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RoleChange>,
) -> ApiResult<StatusCode> {
    state.app.change_member_role(&caller.proof, org, user, &body.role, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{user}", tag = "members",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("user" = String, Path, description = "Member's user id (usr_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Removed: their access ends on their next request"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The organization would be left without an owner", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, user): OrgAnd<UserId>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.remove_member(&caller.proof, org, user, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
