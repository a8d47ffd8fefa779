//! API keys: the list (never a secret), creating one after a step-up with the secret shown once
//! in the answer to the form, and revoking one after a confirmation page.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{ApiKeyInput, ApiKeyRow, AppError, RequestMeta};
use palisade_core::{ApiKeyId, OrgId, ValidationError};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::roles_pages::{PermissionChoice, permission_choices};
use crate::session::{Session, SessionForm};
use crate::view::{ConfirmPage, all_values, fold_list_errors, path_id, when, when_or_never};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/api-keys", get(list).post(create))
        .route("/orgs/{org}/api-keys/{key}/revoke", get(revoke_form).post(revoke))
}

struct KeyLine {
    id: String,
    name: String,
    prefix: String,
    permissions: String,
    allowed_ips: String,
    created: String,
    last_used: String,
    expires: String,
    state: &'static str,
}

impl KeyLine {
    fn active(&self) -> bool {
        self.state == "active"
    }
}

fn key_line(k: ApiKeyRow, now: OffsetDateTime) -> KeyLine {
    // A rotated key's overlap ends as an expiry, so these three cover every key.
    let state = match (k.revoked_at, k.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "active",
    };
    KeyLine {
        id: k.id.to_string(),
        permissions: k.permissions.join(", "),
        allowed_ips: k.allowed_ips.map(|ips| ips.join(", ")).unwrap_or_else(|| "any address".to_owned()),
        created: when(k.created_at),
        last_used: match (k.last_used_at, k.last_used_ip) {
            (Some(at), Some(ip)) => format!("{} from {ip}", when(at)),
            (at, _) => when_or_never(at),
        },
        expires: k.expires_at.map(when).unwrap_or_else(|| "does not expire".to_owned()),
        name: k.name,
        prefix: k.prefix,
        state,
    }
}

/// The create form as last sent (never the password).
#[derive(Default)]
struct KeyForm {
    name: String,
    permissions: Vec<String>,
    expires_on: String,
    allowed_ips: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    l: Layout,
    keys: Vec<KeyLine>,
    form: KeyForm,
    /// The form's errors (beside the form: the step-up macro takes them by this name).
    errors: FieldErrors,
    choices: Vec<PermissionChoice>,
}

async fn keys_page(
    state: &ApiState,
    session: &Session,
    org: OrgId,
    notice: Option<&str>,
    form: KeyForm,
    errors: FieldErrors,
) -> Result<ApiKeysPage, WebError> {
    let l = Layout::signed_in(state, session, Some(org), "API keys", "api-keys").await?.with_notice(notice);
    let now = state.app.clock.now();
    let keys = state.app.list_api_keys(&session.proof, org).await?.into_iter().map(|k| key_line(k, now)).collect();
    // A key can hold only what its creator holds: offer a built-in role's permissions (a custom
    // role's holder is offered all, and the app refuses what they lack).
    let my_role = l.org.as_ref().and_then(|o| o.my_role);
    let choices = permission_choices(&form.permissions, |p| my_role.is_none_or(|r| r.can(p)));
    Ok(ApiKeysPage { l, keys, form, errors, choices })
}

async fn list(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    Ok(
        ok(&keys_page(&state, &session, org, query.notice.as_deref(), KeyForm::default(), FieldErrors::default())
            .await?),
    )
}

/// The API wants a sign-in within the last 10 minutes before a key is made; the form carries the
/// password (and code), so one submit proves it and creates the key, as on the account page.
async fn step_up(state: &ApiState, form: &SessionForm, meta: &RequestMeta) -> Result<(), AppError> {
    let code = Some(form.fields.get("current_code").trim().to_owned()).filter(|c| !c.is_empty());
    let password = SecretString::from(form.fields.get("current_password").to_owned());
    let refused = |message: &str| AppError::Validation(vec![ValidationError::new("current_password", message)]);
    match state.app.step_up(&form.session.proof, password, code, None, meta).await {
        Err(AppError::InvalidCredentials) => {
            Err(refused("is not correct (with an authenticator app, also enter its current code)"))
        }
        Err(AppError::Validation(errors)) => Err(refused(if errors.iter().any(|e| e.field == "webauthn") {
            "is not enough: your account confirms with a security key; create the key through the API"
        } else if errors.iter().any(|e| e.field == "code") {
            "is not enough: also enter the current code from your authenticator app"
        } else {
            "is not correct"
        })),
        other => other,
    }
}

/// `2027-06-30` (a date input) as the start of that day in UTC; empty is "never".
fn parse_expiry(text: &str) -> Result<Option<OffsetDateTime>, ValidationError> {
    if text.is_empty() {
        return Ok(None);
    }
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map(|day| Some(day.midnight().assume_utc()))
        .map_err(|_| ValidationError::new("expires_on", "must be a date such as 2027-06-30"))
}

#[derive(Template)]
#[template(path = "api_key_created.html")]
struct CreatedPage {
    l: Layout,
    key: KeyLine,
    secret: String,
}

async fn create(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    // Whoever may not manage keys here (another tenant's user: 404; a role without the
    // permission: 403) learns it before a password is checked and a step-up audited.
    state.app.list_api_keys(&form.session.proof, org).await?;
    let sent = KeyForm {
        name: form.fields.get("name").trim().to_owned(),
        permissions: all_values(&form.fields, "permissions"),
        expires_on: form.fields.get("expires_on").trim().to_owned(),
        allowed_ips: form.fields.get("allowed_ips").trim().to_owned(),
    };
    let allowed_ips: Vec<String> = sent
        .allowed_ips
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let result = match parse_expiry(&sent.expires_on) {
        Err(err) => Err(AppError::from(err)),
        Ok(expires_at) => match step_up(&state, &form, &meta).await {
            Err(err) => Err(err),
            Ok(()) => {
                let input = ApiKeyInput {
                    name: sent.name.clone(),
                    permissions: sent.permissions.clone(),
                    expires_at,
                    allowed_ips: (!allowed_ips.is_empty()).then_some(allowed_ips),
                };
                state.app.create_api_key(&form.session.proof, org, input, &meta).await
            }
        },
    };
    match result {
        Ok(issued) => {
            let l = Layout::signed_in(&state, &form.session, Some(org), "New API key", "api-keys")
                .await?
                .with_notice(Some("key-created"));
            let secret = issued.secret.expose_secret().to_owned();
            Ok(ok(&CreatedPage { l, key: key_line(issued.key, state.app.clock.now()), secret }))
        }
        // Only when the sign-in aged between the step-up and the write: ask again.
        Err(AppError::StepUpRequired) => {
            let errors = FieldErrors::one("current_password", "is needed again: enter it once more");
            Ok(render(StatusCode::FORBIDDEN, &keys_page(&state, &form.session, org, None, sent, errors).await?))
        }
        Err(err) => {
            let mut errors = fold_list_errors(FieldErrors::from_app(err)?, &["permissions", "allowed_ips"]);
            for (field, _) in errors.0.iter_mut().filter(|(f, _)| f == "expires_at") {
                *field = "expires_on".to_owned();
            }
            let page = keys_page(&state, &form.session, org, None, sent, errors).await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

async fn revoke_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Path((_, key)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let key: ApiKeyId = path_id(&key)?;
    let l = Layout::signed_in(&state, &session, Some(org), "Revoke an API key", "api-keys").await?;
    let keys = state.app.list_api_keys(&session.proof, org).await?;
    let found = keys.into_iter().find(|k| k.id == key && k.revoked_at.is_none()).ok_or(WebError::NotFound)?;
    Ok(ok(&ConfirmPage {
        l,
        heading: format!("Revoke the API key {}?", found.name),
        explain: format!(
            "The key starting {} stops working on its next request. Whatever uses it must get a new key.",
            found.prefix
        ),
        action: format!("/orgs/{org}/api-keys/{key}/revoke"),
        button: "Revoke the key",
        cancel: format!("/orgs/{org}/api-keys"),
    }))
}

async fn revoke(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    Path((_, key)): Path<(String, String)>,
    form: SessionForm,
) -> Result<Response, WebError> {
    let key: ApiKeyId = path_id(&key)?;
    state.app.revoke_api_key(&form.session.proof, org, key, &meta).await?;
    Ok(see_other(&format!("/orgs/{org}/api-keys"), "key-revoked"))
}
