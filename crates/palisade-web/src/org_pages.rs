//! Organizations: the start page, the list and creation, an organization's overview and
//! settings, and accepting an invitation.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, OrgPatch};

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::session::{Session, SessionForm};

/// `/`: the sign-in page for strangers; for a member of exactly one organization, that
/// organization; otherwise the list.
pub async fn home(State(state): State<ApiState>, session: Option<Session>) -> Result<Response, WebError> {
    let Some(session) = session else { return Ok(Redirect::to("/login").into_response()) };
    let orgs = state.app.list_orgs(&session.proof).await?;
    Ok(match orgs.as_slice() {
        [only] => Redirect::to(&format!("/orgs/{}/collections", only.id)).into_response(),
        _ => Redirect::to("/orgs").into_response(),
    })
}

#[derive(Template)]
#[template(path = "orgs.html")]
struct OrgsPage {
    l: Layout,
    name: String,
    errors: FieldErrors,
}

pub async fn list(
    State(state): State<ApiState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let l =
        Layout::signed_in(&state, &session, None, "Organizations", "orgs").await?.with_notice(query.notice.as_deref());
    Ok(ok(&OrgsPage { l, name: String::new(), errors: FieldErrors::default() }))
}

pub async fn create(State(state): State<ApiState>, Meta(meta): Meta, form: SessionForm) -> Result<Response, WebError> {
    let name = form.fields.get("name").trim().to_owned();
    match state.app.create_org(&form.session.proof, &name, &meta).await {
        Ok(org) => Ok(see_other(&format!("/orgs/{}/collections", org.id), "org-created")),
        Err(AppError::EmailUnverified) => {
            let l = Layout::signed_in(&state, &form.session, None, "Organizations", "orgs").await?;
            let errors = FieldErrors::one(
                "name",
                "Confirm your email address first: open the link we emailed you (sign up again to get a new one).",
            );
            Ok(render(StatusCode::FORBIDDEN, &OrgsPage { l, name, errors }))
        }
        Err(err) => {
            let errors = FieldErrors::from_app(err)?;
            let l = Layout::signed_in(&state, &form.session, None, "Organizations", "orgs").await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &OrgsPage { l, name, errors }))
        }
    }
}

pub async fn overview(OrgParam(org): OrgParam) -> Response {
    Redirect::to(&format!("/orgs/{org}/collections")).into_response()
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    l: Layout,
    name: String,
    mfa_policy: String,
    session_idle_minutes: String,
    audit_retention_days: String,
    legal_hold: bool,
    /// What the page showed when it was opened (sent back, so a save sends only changes).
    was: SettingsValues,
    errors: FieldErrors,
}

struct SettingsValues {
    name: String,
    mfa_policy: String,
    session_idle_minutes: String,
    audit_retention_days: String,
    legal_hold: bool,
}

pub async fn settings_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Settings", "settings")
        .await?
        .with_notice(query.notice.as_deref());
    let current = state.app.get_org(&session.proof, org).await?;
    let values = SettingsValues {
        name: current.name,
        mfa_policy: current.mfa_policy,
        session_idle_minutes: current.session_idle_minutes.map(|m| m.to_string()).unwrap_or_default(),
        audit_retention_days: current.audit_retention_days.map(|d| d.to_string()).unwrap_or_default(),
        legal_hold: current.legal_hold.unwrap_or(false),
    };
    Ok(ok(&SettingsPage {
        l,
        name: values.name.clone(),
        mfa_policy: values.mfa_policy.clone(),
        session_idle_minutes: values.session_idle_minutes.clone(),
        audit_retention_days: values.audit_retention_days.clone(),
        legal_hold: values.legal_hold,
        was: values,
        errors: FieldErrors::default(),
    }))
}

pub async fn save_settings(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let fields = &form.fields;
    let mut errors = Vec::new();
    let idle = match fields.get("session_idle_minutes").trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(minutes) => Some(minutes),
            Err(_) => {
                errors.push((
                    "session_idle_minutes".to_owned(),
                    "Enter a whole number of minutes, or leave it empty.".to_owned(),
                ));
                None
            }
        },
    };
    let retention = match fields.get("audit_retention_days").trim().parse::<i64>() {
        Ok(days) => Some(days),
        Err(_) if fields.get("audit_retention_days").trim().is_empty() => None,
        Err(_) => {
            errors.push(("audit_retention_days".to_owned(), "Enter a whole number of days.".to_owned()));
            None
        }
    };
    // Only what this form changed is sent: a page opened earlier must not quietly undo another
    // admin's change (a legal hold set meanwhile), nor write events for untouched settings. The
    // values the page was rendered with come back in `was_*` fields.
    let changed = |name: &str| fields.get(name) != fields.get(&format!("was_{name}"));
    let patch = OrgPatch {
        name: changed("name").then(|| fields.get("name").trim().to_owned()),
        session_idle_minutes: changed("session_idle_minutes").then_some(idle),
        mfa_policy: changed("mfa_policy").then(|| fields.get("mfa_policy").to_owned()),
        audit_retention_days: retention.filter(|_| changed("audit_retention_days")),
        legal_hold: changed("legal_hold").then(|| fields.get("legal_hold") == "on"),
        cors_origins: None,
    };
    let nothing_changed = patch.name.is_none()
        && patch.session_idle_minutes.is_none()
        && patch.mfa_policy.is_none()
        && patch.audit_retention_days.is_none()
        && patch.legal_hold.is_none();
    let result = if !errors.is_empty() {
        Err(AppError::Validation(Vec::new()))
    } else if nothing_changed {
        Ok(())
    } else {
        state.app.update_org(&form.session.proof, org, patch, &meta).await.map(|_| ())
    };
    match result {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/settings"), "settings-saved")),
        Err(err) => {
            let mut shown = FieldErrors::from_app(err)?;
            shown.0.extend(errors);
            let l = Layout::signed_in(&state, &form.session, Some(org), "Settings", "settings").await?;
            let page = SettingsPage {
                l,
                name: fields.get("name").to_owned(),
                mfa_policy: fields.get("mfa_policy").to_owned(),
                session_idle_minutes: fields.get("session_idle_minutes").to_owned(),
                audit_retention_days: fields.get("audit_retention_days").to_owned(),
                legal_hold: fields.get("legal_hold") == "on",
                was: SettingsValues {
                    name: fields.get("was_name").to_owned(),
                    mfa_policy: fields.get("was_mfa_policy").to_owned(),
                    session_idle_minutes: fields.get("was_session_idle_minutes").to_owned(),
                    audit_retention_days: fields.get("was_audit_retention_days").to_owned(),
                    legal_hold: fields.get("was_legal_hold") == "on",
                },
                errors: shown,
            };
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "accept.html")]
struct AcceptPage {
    l: Layout,
    token: String,
    error: Option<&'static str>,
}

/// The invitation link: signed in, a button joins; otherwise sign in (or up) first.
pub async fn accept_form(
    State(state): State<ApiState>,
    session: Option<Session>,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let token = query.token.unwrap_or_default();
    let l = match &session {
        Some(session) => Layout::signed_in(&state, session, None, "Join an organization", "").await?,
        None => Layout::plain("Join an organization", ""),
    };
    Ok(ok(&AcceptPage { l, token, error: None }))
}

pub async fn accept(State(state): State<ApiState>, Meta(meta): Meta, form: SessionForm) -> Result<Response, WebError> {
    let token = form.fields.get("token").to_owned();
    match state.app.accept_invitation(&form.session.proof, &token, &meta).await {
        Ok((org, _)) => Ok(see_other(&format!("/orgs/{org}/collections"), "joined")),
        Err(AppError::InvalidToken) | Err(AppError::NotFound) | Err(AppError::Validation(_)) => {
            let l = Layout::signed_in(&state, &form.session, None, "Join an organization", "").await?;
            let error = Some("This invitation is unknown, used, expired, or for another email address.");
            Ok(render(StatusCode::BAD_REQUEST, &AcceptPage { l, token, error }))
        }
        Err(err) => Err(err.into()),
    }
}
