//! Roles: the permission matrix of every role (from the same call as `GET …/roles`), creating and
//! deleting custom roles, and the access review with its CSV download.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, RoleInput};
use palisade_core::{OrgId, Permission, RoleId};

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::session::{Session, SessionForm};
use crate::view::{ConfirmPage, all_values, fold_list_errors, path_id, when, when_or_never};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/roles", get(roles).post(create))
        .route("/orgs/{org}/roles/{role}/delete", get(delete_form).post(delete))
        .route("/orgs/{org}/access-review", get(access_review))
}

/// What each permission lets a member do, in a few words (the names are the API's).
pub fn permission_help(p: Permission) -> &'static str {
    match p {
        Permission::OrgRead => "See the organization",
        Permission::OrgSettings => "Change the organization's settings",
        Permission::SecuritySettings => "Security settings and encryption key status",
        Permission::MembersRead => "See the members",
        Permission::MembersManage => "Invite, change roles, remove members; access review",
        Permission::RolesManage => "Create and delete custom roles",
        Permission::CollectionsRead => "See collections",
        Permission::CollectionsManage => "Create collections and change their schemas",
        Permission::RecordsReadAll => "Read every record",
        Permission::RecordsReadOwn => "Read their own records",
        Permission::RecordsCreate => "Create records",
        Permission::RecordsUpdate => "Change records",
        Permission::RecordsDelete => "Delete records",
        Permission::RecordsSensitiveRead => "See sensitive fields",
        Permission::AuditRead => "Read the audit log",
        Permission::AuditExport => "Export the audit log",
        Permission::ApiKeysManage => "Create and revoke API keys",
        Permission::SecretsManage => "Write, replace and delete secrets",
    }
}

/// A permission as a checkbox: its name, help and whether the form had it ticked.
pub struct PermissionChoice {
    pub name: &'static str,
    pub help: &'static str,
    pub checked: bool,
}

/// Every permission, ticked where `chosen` names it.
pub fn permission_choices(chosen: &[String], offered: impl Fn(Permission) -> bool) -> Vec<PermissionChoice> {
    Permission::ALL
        .into_iter()
        .filter(|p| offered(*p))
        .map(|p| PermissionChoice {
            name: p.as_str(),
            help: permission_help(p),
            checked: chosen.iter().any(|c| c == p.as_str()),
        })
        .collect()
}

struct Column {
    name: String,
    builtin: bool,
}

struct Cell {
    allowed: bool,
}

struct MatrixRow {
    permission: &'static str,
    help: &'static str,
    cells: Vec<Cell>,
}

struct CustomRoleRow {
    id: String,
    name: String,
    description: String,
    permissions: String,
    members: i64,
}

/// The create form as last sent.
#[derive(Default)]
struct RoleForm {
    name: String,
    description: String,
    permissions: Vec<String>,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "roles.html")]
struct RolesPage {
    l: Layout,
    columns: Vec<Column>,
    rows: Vec<MatrixRow>,
    custom: Vec<CustomRoleRow>,
    /// Whether to show the forms: the app decides on submit, this only avoids offering forms to
    /// built-in roles that can never use them (a custom role's holder sees them).
    can_manage: bool,
    form: RoleForm,
    choices: Vec<PermissionChoice>,
    problem: Option<String>,
}

async fn roles_page(
    state: &ApiState,
    session: &Session,
    org: OrgId,
    notice: Option<&str>,
    form: RoleForm,
    problem: Option<String>,
) -> Result<RolesPage, WebError> {
    let l = Layout::signed_in(state, session, Some(org), "Roles", "roles").await?.with_notice(notice);
    let (builtin, custom) = state.app.list_all_roles(&session.proof, org).await?;
    let columns = builtin
        .iter()
        .map(|(role, _)| Column { name: role.as_str().to_owned(), builtin: true })
        .chain(custom.iter().map(|r| Column { name: r.name.clone(), builtin: false }))
        .collect();
    let rows = Permission::ALL
        .into_iter()
        .map(|p| MatrixRow {
            permission: p.as_str(),
            help: permission_help(p),
            cells: builtin
                .iter()
                .map(|(_, held)| Cell { allowed: held.contains(&p) })
                .chain(custom.iter().map(|r| Cell { allowed: r.permissions.iter().any(|h| h == p.as_str()) }))
                .collect(),
        })
        .collect();
    let my_role = l.org.as_ref().and_then(|o| o.my_role);
    let can_manage = my_role.is_none_or(|r| r.can(Permission::RolesManage));
    let choices = permission_choices(&form.permissions, |_| true);
    let custom = custom
        .into_iter()
        .map(|r| CustomRoleRow {
            id: r.id.to_string(),
            permissions: r.permissions.join(", "),
            name: r.name,
            description: r.description,
            members: r.members,
        })
        .collect();
    Ok(RolesPage { l, columns, rows, custom, can_manage, form, choices, problem })
}

async fn roles(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    Ok(ok(&roles_page(&state, &session, org, query.notice.as_deref(), RoleForm::default(), None).await?))
}

async fn create(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let input = RoleInput {
        name: form.fields.get("name").trim().to_owned(),
        description: form.fields.get("description").trim().to_owned(),
        permissions: all_values(&form.fields, "permissions"),
    };
    let mut sent = RoleForm {
        name: input.name.clone(),
        description: input.description.clone(),
        permissions: input.permissions.clone(),
        errors: FieldErrors::default(),
    };
    let status = match state.app.create_role(&form.session.proof, org, input, &meta).await {
        Ok(_) => return Ok(see_other(&format!("/orgs/{org}/roles"), "role-created")),
        Err(AppError::Conflict(_)) => {
            sent.errors = FieldErrors::one("name", "A role with this name exists already.");
            StatusCode::CONFLICT
        }
        Err(err) => {
            sent.errors = fold_list_errors(FieldErrors::from_app(err)?, &["permissions"]);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    Ok(render(status, &roles_page(&state, &form.session, org, None, sent, None).await?))
}

async fn delete_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Path((_, role)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let role: RoleId = path_id(&role)?;
    let l = Layout::signed_in(&state, &session, Some(org), "Delete a role", "roles").await?;
    let (_, custom) = state.app.list_all_roles(&session.proof, org).await?;
    let found = custom.into_iter().find(|r| r.id == role).ok_or(WebError::NotFound)?;
    let explain = if found.members > 0 {
        format!("{} member(s) hold it: give them another role first, or the deletion is refused.", found.members)
    } else {
        "No member holds it. Deleting it cannot be undone.".to_owned()
    };
    Ok(ok(&ConfirmPage {
        l,
        heading: format!("Delete the role {}?", found.name),
        explain,
        action: format!("/orgs/{org}/roles/{role}/delete"),
        button: "Delete the role",
        cancel: format!("/orgs/{org}/roles"),
    }))
}

async fn delete(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, role)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let role: RoleId = path_id(&role)?;
    match state.app.delete_role(&form.session.proof, org, role, &meta).await {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/roles"), "role-deleted")),
        Err(AppError::Conflict(_)) => {
            let problem = Some("Not deleted: members still hold this role. Give them another role first.".to_owned());
            let page = roles_page(&state, &form.session, org, None, RoleForm::default(), problem).await?;
            Ok(render(StatusCode::CONFLICT, &page))
        }
        Err(err) => Err(err.into()),
    }
}

struct ReviewLine {
    name: String,
    email: String,
    role: String,
    permissions: String,
    mfa: bool,
    last_active: String,
    joined: String,
}

#[derive(Template)]
#[template(path = "access_review.html")]
struct AccessReviewPage {
    l: Layout,
    lines: Vec<ReviewLine>,
    csv: String,
}

async fn access_review(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Access review", "members").await?;
    let rows = state.app.access_review(&session.proof, org).await?;
    let lines = rows
        .into_iter()
        .map(|r| ReviewLine {
            role: match &r.custom_role {
                Some((_, name)) => format!("{name} (custom)"),
                None => r.role.clone(),
            },
            permissions: r.permissions.join(", "),
            mfa: r.mfa,
            last_active: when_or_never(r.last_active_at),
            joined: when(r.joined_at),
            name: r.name,
            email: r.email,
        })
        .collect();
    // The API serves the same review as CSV; the session cookie authenticates a plain GET there.
    let csv = format!("/api/v1/orgs/{org}/access-review?format=csv");
    Ok(ok(&AccessReviewPage { l, lines, csv }))
}
