//! The organization's write-only secrets: names and metadata, creating one, replacing a value,
//! and deleting one after a confirmation page. A value goes in through a password field and is
//! never shown, echoed back into a form, or put in a URL.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, SecretRow};
use palisade_core::{OrgId, UserId};
use secrecy::SecretString;

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::session::{Session, SessionForm};
use crate::view::{ConfirmPage, when};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/secrets", get(list).post(create))
        .route("/orgs/{org}/secrets/{name}/replace", post(replace))
        .route("/orgs/{org}/secrets/{name}/delete", get(delete_form).post(delete))
}

struct SecretLine {
    name: String,
    version: i32,
    key: String,
    created: String,
    updated: String,
    /// Why the last replace of this secret's value was refused.
    replace_error: Option<String>,
}

/// An error of one row's replace form, shown in that row.
struct RowError {
    name: String,
    message: String,
}

#[derive(Template)]
#[template(path = "secrets.html")]
struct SecretsPage {
    l: Layout,
    secrets: Vec<SecretLine>,
    /// The create form's name as sent; its value is never sent back.
    name: String,
    errors: FieldErrors,
}

fn by(at: time::OffsetDateTime, who: Option<UserId>, names: &HashMap<UserId, String>) -> String {
    match who.and_then(|u| names.get(&u)) {
        Some(name) => format!("{} by {name}", when(at)),
        None => when(at),
    }
}

async fn secrets_page(
    state: &ApiState,
    session: &Session,
    org: OrgId,
    notice: Option<&str>,
    (name, errors, replace_error): (String, FieldErrors, Option<RowError>),
) -> Result<SecretsPage, WebError> {
    let l = Layout::signed_in(state, session, Some(org), "Secrets", "secrets").await?.with_notice(notice);
    let rows: Vec<SecretRow> = state.app.list_secrets(&session.proof, org).await?;
    let names: HashMap<UserId, String> =
        state.app.list_members(&session.proof, org).await?.into_iter().map(|m| (m.user_id, m.name)).collect();
    let secrets = rows
        .into_iter()
        .map(|s| SecretLine {
            version: s.version,
            key: s.key_id.map(palisade_app::keyring::data_key_label).unwrap_or_default(),
            created: by(s.created_at, s.created_by, &names),
            updated: by(s.updated_at, s.updated_by, &names),
            replace_error: replace_error.as_ref().filter(|e| e.name == s.name).map(|e| e.message.clone()),
            name: s.name,
        })
        .collect();
    Ok(SecretsPage { l, secrets, name, errors })
}

async fn list(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let blank = (String::new(), FieldErrors::default(), None);
    Ok(ok(&secrets_page(&state, &session, org, query.notice.as_deref(), blank).await?))
}

async fn create(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let name = form.fields.get("name").trim().to_owned();
    let value = SecretString::from(form.fields.get("value").to_owned());
    let (status, errors) = match state.app.create_secret(&form.session.proof, org, &name, value, &meta).await {
        Ok(_) => return Ok(see_other(&format!("/orgs/{org}/secrets"), "secret-saved")),
        Err(AppError::Conflict(_)) => (
            StatusCode::CONFLICT,
            FieldErrors::one("name", "A secret with this name exists: replace its value in the list instead."),
        ),
        Err(err) => (StatusCode::UNPROCESSABLE_ENTITY, FieldErrors::from_app(err)?),
    };
    Ok(render(status, &secrets_page(&state, &form.session, org, None, (name, errors, None)).await?))
}

async fn replace(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, name)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let value = SecretString::from(form.fields.get("value").to_owned());
    match state.app.replace_secret(&form.session.proof, org, &name, value, &meta).await {
        Ok(_) => Ok(see_other(&format!("/orgs/{org}/secrets"), "secret-saved")),
        Err(AppError::Validation(errors)) => {
            let message = errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
            let row = Some(RowError { name, message });
            let page = secrets_page(&state, &form.session, org, None, (String::new(), FieldErrors::default(), row));
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page.await?))
        }
        Err(err) => Err(err.into()),
    }
}

async fn delete_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Path((_, name)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Delete a secret", "secrets").await?;
    let rows = state.app.list_secrets(&session.proof, org).await?;
    let found = rows.into_iter().find(|s| s.name == name).ok_or(WebError::NotFound)?;
    Ok(ok(&ConfirmPage {
        l,
        heading: format!("Delete the secret {}?", found.name),
        explain: "Whatever uses it stops working. The value cannot be recovered.".to_owned(),
        action: format!("/orgs/{org}/secrets/{}/delete", found.name),
        button: "Delete the secret",
        cancel: format!("/orgs/{org}/secrets"),
    }))
}

async fn delete(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, name)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    state.app.delete_secret(&form.session.proof, org, &name, &meta).await?;
    Ok(see_other(&format!("/orgs/{org}/secrets"), "secret-deleted"))
}
