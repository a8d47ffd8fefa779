//! The signed-in user's own account: profile, password and email changes (each behind a fresh
//! proof of the password, the API's step-up), the authenticator app with its QR code and backup
//! codes, security keys, and sessions.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, CredentialInfo, SessionInfo};
use palisade_core::SessionId;
use secrecy::SecretString;

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, WebError, ok, render, see_other};
use crate::session::{Session, SessionForm};

/// A registered security key as the account page lists it (with its `wac_…` id for removal).
struct KeyView {
    id: String,
    info: CredentialInfo,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    sessions: Vec<SessionInfo>,
    keys: Vec<KeyView>,
    errors: FieldErrors,
    email_sent: bool,
}

async fn account_page(
    state: &ApiState,
    session: &Session,
    notice: Option<&str>,
    errors: FieldErrors,
    email_sent: bool,
) -> Result<AccountPage, WebError> {
    let l = Layout::signed_in(state, session, None, "Your account", "account").await?.with_notice(notice);
    let sessions = state.app.list_sessions(&session.proof).await?;
    let keys = state
        .app
        .list_webauthn_credentials(&session.proof)
        .await?
        .into_iter()
        .map(|info| KeyView { id: palisade_core::CredentialId::from_uuid(info.id).to_string(), info })
        .collect();
    Ok(AccountPage { l, sessions, keys, errors, email_sent })
}

pub async fn account(
    State(state): State<ApiState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    Ok(ok(&account_page(&state, &session, query.notice.as_deref(), FieldErrors::default(), false).await?))
}

/// The step-up every sensitive account change needs: the current password, and the code from
/// the authenticator app when one is set up.
async fn step_up(state: &ApiState, form: &SessionForm, meta: &palisade_app::RequestMeta) -> Result<(), AppError> {
    let code = Some(form.fields.get("current_code").trim().to_owned()).filter(|c| !c.is_empty());
    let password = SecretString::from(form.fields.get("current_password").to_owned());
    match state.app.step_up(&form.session.proof, password, code, None, meta).await {
        Err(AppError::InvalidCredentials) => Err(AppError::Validation(vec![palisade_core::ValidationError::new(
            "current_password",
            "is not correct (with an authenticator app, also enter its current code)",
        )])),
        other => other,
    }
}

async fn form_failed(state: &ApiState, form: &SessionForm, err: AppError) -> Result<Response, WebError> {
    let errors = FieldErrors::from_app(err)?;
    let page = account_page(state, &form.session, None, errors, false).await?;
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

pub async fn change_password(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    let new_password = SecretString::from(form.fields.get("new_password").to_owned());
    let result = match step_up(&state, &form, &meta).await {
        Ok(()) => state.app.change_password(&form.session.proof, new_password, &meta).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/account", "password-changed")),
        Err(AppError::Validation(errors)) => {
            // The app names the new password `password`; the form calls it `new_password`.
            let renamed = errors
                .into_iter()
                .map(|mut e| {
                    if e.field.trim_start_matches('/') == "password" {
                        e.field = "new_password".to_owned();
                    }
                    e
                })
                .collect();
            form_failed(&state, &form, AppError::Validation(renamed)).await
        }
        Err(err) => form_failed(&state, &form, err).await,
    }
}

pub async fn change_email(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    let result = match step_up(&state, &form, &meta).await {
        Ok(()) => state.app.request_email_change(&form.session.proof, form.fields.get("new_email").trim(), &meta).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(ok(&account_page(&state, &form.session, None, FieldErrors::default(), true).await?)),
        Err(AppError::Validation(errors)) => {
            let renamed = errors
                .into_iter()
                .map(|mut e| {
                    if e.field.trim_start_matches('/') == "email" {
                        e.field = "new_email".to_owned();
                    }
                    e
                })
                .collect();
            form_failed(&state, &form, AppError::Validation(renamed)).await
        }
        Err(err) => form_failed(&state, &form, err).await,
    }
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    l: Layout,
    secret: String,
    qr_data_url: String,
    error: Option<String>,
}

/// Starts enrolment (a POST: it replaces any unconfirmed secret) and shows the QR code.
pub async fn start_totp(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    // Confirming needs a recent sign-in (step-up): the password is asked here, before the QR.
    if let Err(err) = step_up(&state, &form, &meta).await {
        return form_failed(&state, &form, err).await;
    }
    match state.app.start_totp(&form.session.proof).await {
        Ok(enrollment) => {
            let l = Layout::signed_in(&state, &form.session, None, "Authenticator app", "account").await?;
            let qr_data_url = format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(enrollment.qr_svg.as_bytes())
            );
            Ok(ok(&TotpPage { l, secret: enrollment.secret, qr_data_url, error: None }))
        }
        Err(AppError::Conflict(_)) => {
            let errors = FieldErrors::one("totp", "An authenticator app is already set up: turn it off first.");
            Ok(render(StatusCode::CONFLICT, &account_page(&state, &form.session, None, errors, false).await?))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "backup_codes.html")]
struct BackupCodesPage {
    l: Layout,
    codes: Vec<String>,
    download: String,
}

pub async fn confirm_totp(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    match state.app.confirm_totp(&form.session.proof, form.fields.get("code").trim(), &meta).await {
        Ok(codes) => {
            let l = Layout::signed_in(&state, &form.session, None, "Backup codes", "account")
                .await?
                .with_notice(Some("totp-enabled"));
            let text = format!(
                "Palisade backup codes. Each works once, in place of an authenticator code.\n\n{}\n",
                codes.join("\n")
            );
            let download =
                format!("data:text/plain;base64,{}", base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
            Ok(ok(&BackupCodesPage { l, codes, download }))
        }
        Err(AppError::Validation(_)) | Err(AppError::InvalidCredentials) => {
            // Show the same secret again: enrolment stays pending until a code matches.
            let l = Layout::signed_in(&state, &form.session, None, "Authenticator app", "account").await?;
            let page = TotpPage {
                l,
                secret: form.fields.get("secret").to_owned(),
                qr_data_url: Some(form.fields.get("qr"))
                    .filter(|qr| qr.starts_with("data:image/svg+xml;base64,"))
                    .unwrap_or_default()
                    .to_owned(),
                error: Some("That code does not match. Enter the current 6-digit code from the app.".to_owned()),
            };
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn disable_totp(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    let result = match step_up(&state, &form, &meta).await {
        Ok(()) => state.app.disable_totp(&form.session.proof, &meta).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/account", "totp-disabled")),
        Err(err) => form_failed(&state, &form, err).await,
    }
}

pub async fn revoke_others(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    state.app.revoke_other_sessions(&form.session.proof, &meta).await?;
    Ok(see_other("/account", "sessions-revoked"))
}

pub async fn revoke_session(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    Path(id): Path<String>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let id: SessionId = id.parse().map_err(|_| WebError::NotFound)?;
    state.app.revoke_session(&form.session.proof, id, &meta).await?;
    Ok(see_other("/account", "session-revoked"))
}

pub async fn remove_key(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    Path(id): Path<String>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let id = id.parse().map_err(|_| WebError::NotFound)?;
    let result = match step_up(&state, &form, &meta).await {
        Ok(()) => state.app.remove_webauthn_credential(&form.session.proof, id, &meta).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/account", "key-removed")),
        Err(err) => form_failed(&state, &form, err).await,
    }
}

#[derive(Template)]
#[template(path = "key_register.html")]
struct KeyRegisterPage {
    l: Layout,
    name: String,
    state: String,
    options: String,
}

/// Starts a security-key registration and shows the page whose button runs the ceremony
/// (`console.js`); the key's answer comes back to `add_key`.
pub async fn start_key(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    form: SessionForm,
) -> Result<Response, WebError> {
    let name = form.fields.get("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        let errors = FieldErrors::one("key_name", "Give the key a name of 1 to 100 characters.");
        return Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &account_page(&state, &form.session, None, errors, false).await?,
        ));
    }
    // Registering needs a recent sign-in (step-up): the password is asked here.
    if let Err(err) = step_up(&state, &form, &meta).await {
        return form_failed(&state, &form, err).await;
    }
    let start = state.app.start_webauthn_registration(&form.session.proof).await?;
    let l = Layout::signed_in(&state, &form.session, None, "Add a security key", "account").await?;
    Ok(ok(&KeyRegisterPage { l, name, state: start.state, options: start.options.to_string() }))
}

pub async fn add_key(State(state): State<ApiState>, Meta(meta): Meta, form: SessionForm) -> Result<Response, WebError> {
    let credential: serde_json::Value = serde_json::from_str(form.fields.get("credential")).unwrap_or_default();
    let name = form.fields.get("name").to_owned();
    match state
        .app
        .finish_webauthn_registration(&form.session.proof, &name, form.fields.get("state"), credential, &meta)
        .await
    {
        Ok(_) => Ok(see_other("/account", "key-added")),
        Err(AppError::Validation(_)) | Err(AppError::Conflict(_)) => {
            let errors = FieldErrors::one(
                "key_name",
                "The key could not be added: its answer did not check out, it is already registered, or the name is taken.",
            );
            Ok(render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &account_page(&state, &form.session, None, errors, false).await?,
            ))
        }
        Err(err) => Err(err.into()),
    }
}
