//! Members and invitations: who belongs to the organization with which role, inviting by email,
//! changing a role, ending a member's sessions, and removing a member after a confirmation page.
//! The role matrix, custom roles and the access review are in `roles_pages`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, Invitation, Member, ReviewRow};
use palisade_core::{InvitationId, OrgId, OrgRole, UserId};

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::session::{Session, SessionForm};
use crate::view::{ConfirmPage, path_id, when};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/members/{user}/role", post(change_role))
        .route("/orgs/{org}/members/{user}/revoke-sessions", post(revoke_sessions))
        .route("/orgs/{org}/members/{user}/remove", get(remove_form).post(remove))
        .route("/orgs/{org}/invitations", post(invite))
        .route("/orgs/{org}/invitations/{invitation}/revoke", post(revoke_invitation))
        .merge(crate::roles_pages::routes())
}

struct MemberRow {
    user_id: String,
    name: String,
    email: String,
    /// What the table shows: a built-in role, or a custom role's name.
    role: String,
    /// The role select's current option: a built-in role's name or a custom role's id.
    role_value: String,
    joined: String,
    is_me: bool,
}

struct RoleOption {
    value: String,
    label: String,
}

struct InvitationRow {
    id: String,
    email: String,
    role: String,
    sent: String,
    expires: String,
}

/// What only members who may manage members see: the pending invitations and the forms.
struct Manage {
    invitations: Vec<InvitationRow>,
    /// Built-in and custom roles, for a member's role select.
    roles: Vec<RoleOption>,
}

/// The invite form as last sent (kept when it comes back with errors).
#[derive(Default)]
struct InviteForm {
    email: String,
    role: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    l: Layout,
    members: Vec<MemberRow>,
    manage: Option<Manage>,
    invite: InviteForm,
    /// Built-in roles an invitation can carry (custom roles are given after joining), and
    /// whether each is the one selected.
    invite_roles: Vec<(&'static str, bool)>,
    /// A change the app refused for a reason the member can act on (e.g. the last owner).
    problem: Option<String>,
}

fn role_label(role: Option<OrgRole>, custom: Option<&str>) -> String {
    match (role, custom) {
        (Some(role), _) => role.as_str().to_owned(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => "custom role".to_owned(),
    }
}

async fn members_page(
    state: &ApiState,
    session: &Session,
    org: OrgId,
    notice: Option<&str>,
    invite: InviteForm,
    problem: Option<String>,
) -> Result<MembersPage, WebError> {
    let l = Layout::signed_in(state, session, Some(org), "Members", "members").await?.with_notice(notice);
    let me = l.me.as_ref().map(|m| m.id);
    let list: Vec<Member> = state.app.list_members(&session.proof, org).await?;
    // Whether the forms show is the app's decision (members.manage, whatever the role is called):
    // listing invitations needs exactly that permission.
    let pending = match state.app.list_invitations(&session.proof, org).await {
        Ok(pending) => Some(pending),
        Err(AppError::Forbidden) => None,
        Err(err) => return Err(err.into()),
    };
    let (manage, review) = match pending {
        None => (None, Vec::new()),
        Some(pending) => {
            let (builtin, custom) = state.app.list_all_roles(&session.proof, org).await?;
            // The access review names each member's custom role; the member list does not.
            let review: Vec<ReviewRow> = state.app.access_review(&session.proof, org).await?;
            let roles = builtin
                .iter()
                .map(|(role, _)| RoleOption { value: role.as_str().to_owned(), label: role.as_str().to_owned() })
                .chain(
                    custom
                        .iter()
                        .map(|r| RoleOption { value: r.id.to_string(), label: format!("{} (custom)", r.name) }),
                )
                .collect();
            (Some(Manage { invitations: pending.into_iter().map(invitation_row).collect(), roles }), review)
        }
    };
    let members = list
        .into_iter()
        .map(|m| {
            let custom = review.iter().find(|r| r.user_id == m.user_id).and_then(|r| r.custom_role.as_ref());
            MemberRow {
                user_id: m.user_id.to_string(),
                role: role_label(m.role, custom.map(|(_, name)| name.as_str())),
                role_value: match (m.role, custom) {
                    (Some(role), _) => role.as_str().to_owned(),
                    (None, Some((id, _))) => id.to_string(),
                    (None, None) => String::new(),
                },
                joined: when(m.joined_at),
                is_me: Some(m.user_id) == me,
                name: m.name,
                email: m.email,
            }
        })
        .collect();
    let invite_roles = OrgRole::ALL.iter().map(|r| (r.as_str(), r.as_str() == invite.role)).collect();
    Ok(MembersPage { l, members, manage, invite, invite_roles, problem })
}

fn invitation_row(i: Invitation) -> InvitationRow {
    InvitationRow {
        id: i.id.to_string(),
        email: i.email,
        role: role_label(i.role, None),
        sent: when(i.created_at),
        expires: when(i.expires_at),
    }
}

async fn members(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let invite = InviteForm { role: "member".to_owned(), ..InviteForm::default() };
    Ok(ok(&members_page(&state, &session, org, query.notice.as_deref(), invite, None).await?))
}

async fn invite(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let email = form.fields.get("email").trim().to_owned();
    let role = form.fields.get("role").to_owned();
    let (status, errors) = match state.app.invite_member(&form.session.proof, org, &email, &role, &meta).await {
        Ok(_) => return Ok(see_other(&format!("/orgs/{org}/members"), "invited")),
        Err(AppError::Conflict(_)) => (
            StatusCode::CONFLICT,
            FieldErrors::one("email", "This address already has a pending invitation or is a member."),
        ),
        Err(err) => (StatusCode::UNPROCESSABLE_ENTITY, FieldErrors::from_app(err)?),
    };
    let page = members_page(&state, &form.session, org, None, InviteForm { email, role, errors }, None).await?;
    Ok(render(status, &page))
}

/// A member change the app refused for a reason shown on the members page (the organization
/// must keep an owner; an unknown role); anything else is the error page.
async fn member_change_failed(
    state: &ApiState,
    form: &SessionForm,
    org: OrgId,
    err: AppError,
) -> Result<Response, WebError> {
    let (status, problem) = match err {
        AppError::Conflict(why) => (StatusCode::CONFLICT, format!("Not changed: {why}.")),
        AppError::Validation(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Not changed: {}.",
                errors.into_iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            ),
        ),
        other => return Err(other.into()),
    };
    let invite = InviteForm { role: "member".to_owned(), ..InviteForm::default() };
    let page = members_page(state, &form.session, org, None, invite, Some(problem)).await?;
    Ok(render(status, &page))
}

async fn change_role(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, user)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let user: UserId = path_id(&user)?;
    match state.app.change_member_role(&form.session.proof, org, user, form.fields.get("role"), &meta).await {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/members"), "role-changed")),
        Err(err) => member_change_failed(&state, &form, org, err).await,
    }
}

async fn revoke_sessions(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, user)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let user: UserId = path_id(&user)?;
    match state.app.revoke_member_sessions(&form.session.proof, org, user, &meta).await {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/members"), "member-sessions-revoked")),
        Err(err) => member_change_failed(&state, &form, org, err).await,
    }
}

async fn remove_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let user: UserId = path_id(&user)?;
    let l = Layout::signed_in(&state, &session, Some(org), "Remove a member", "members").await?;
    let members = state.app.list_members(&session.proof, org).await?;
    let member = members.into_iter().find(|m| m.user_id == user).ok_or(WebError::NotFound)?;
    Ok(ok(&ConfirmPage {
        l,
        heading: format!("Remove {} from the organization?", member.name),
        explain: format!(
            "{} ({}) loses access on their next request. Their records stay. To let them back in, invite them again.",
            member.name, member.email
        ),
        action: format!("/orgs/{org}/members/{user}/remove"),
        button: "Remove the member",
        cancel: format!("/orgs/{org}/members"),
    }))
}

async fn remove(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, user)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let user: UserId = path_id(&user)?;
    match state.app.remove_member(&form.session.proof, org, user, &meta).await {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/members"), "member-removed")),
        Err(err) => member_change_failed(&state, &form, org, err).await,
    }
}

async fn revoke_invitation(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, invitation)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let invitation: InvitationId = path_id(&invitation)?;
    state.app.revoke_invitation(&form.session.proof, org, invitation, &meta).await?;
    Ok(see_other(&format!("/orgs/{org}/members"), "invitation-revoked"))
}
