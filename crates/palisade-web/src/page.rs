//! What every console page shares: the layout (who is signed in, their organizations, the
//! current one), rendering with the console's CSP, notices, and errors as pages.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_api::ApiState;
use palisade_api::problem::ApiError;
use palisade_app::{AppError, Me, Org};
use palisade_core::{OrgId, ValidationError};

use crate::session::Session;

/// Scripts and styles only from our own files; nothing inline, no eval, no framing, forms post
/// only to us. The TOTP QR code is an `img` with a `data:` URL.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The frame of a signed-in page.
pub struct Layout {
    pub title: String,
    pub csrf: String,
    pub me: Option<Me>,
    pub orgs: Vec<Org>,
    pub org: Option<Org>,
    pub section: &'static str,
    pub notice: Option<&'static str>,
}

impl Layout {
    /// A page outside any organization, or before sign-in.
    pub fn plain(title: impl Into<String>, csrf: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            csrf: csrf.into(),
            me: None,
            orgs: Vec::new(),
            org: None,
            section: "",
            notice: None,
        }
    }

    /// A signed-in page; with `org`, one of that organization's pages. An organization the
    /// user is not a member of is "not found", exactly as in the API.
    pub async fn signed_in(
        state: &ApiState,
        session: &Session,
        org: Option<OrgId>,
        title: impl Into<String>,
        section: &'static str,
    ) -> Result<Layout, WebError> {
        let me = state.app.me(&session.proof).await?;
        let orgs = state.app.list_orgs(&session.proof).await?;
        let current = match org {
            None => None,
            Some(id) => Some(orgs.iter().find(|o| o.id == id).cloned().ok_or(WebError::NotFound)?),
        };
        Ok(Layout {
            title: title.into(),
            csrf: session.csrf.clone(),
            me: Some(me),
            orgs,
            org: current,
            section,
            notice: None,
        })
    }

    pub fn with_notice(mut self, key: Option<&str>) -> Layout {
        self.notice = key.and_then(notice_text);
        self
    }

    /// Whether the organization menu offers a section. Only a convenience: the app refuses what
    /// a role may not do either way. A custom role (no built-in role) sees every section.
    pub fn offers(&self, section: &str) -> bool {
        use palisade_core::Permission::*;
        let Some(role) = self.org.as_ref().and_then(|o| o.my_role) else { return true };
        match section {
            "audit" => role.can(AuditRead),
            "api-keys" => role.can(ApiKeysManage),
            "secrets" => role.can(SecretsManage),
            "keys" | "settings" => role.can(SecuritySettings) || role.can(OrgSettings),
            _ => true,
        }
    }

    pub fn org_id(&self) -> String {
        self.org.as_ref().map(|o| o.id.to_string()).unwrap_or_default()
    }
}

/// Notices shown after a redirect: a fixed list, so nothing from the URL is ever echoed.
fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "signed-out" => "You are signed out.",
        "verified" => "Your email address is confirmed. You can create or join organizations now.",
        "reset" => "Your password is changed and every session was signed out. Sign in with the new password.",
        "email-changed" => "Your email address is changed. Sign in with the new one.",
        "key-added" => "The security key is registered; sign-ins now ask for a second step.",
        "key-removed" => "The security key is removed.",
        "reset-sent" => "If that address has an account, a reset link is on its way to it (valid 30 minutes).",
        "org-created" => "The organization is created.",
        "settings-saved" => "Settings saved.",
        "collection-created" => "The collection is created.",
        "schema-saved" => "The schema is saved.",
        "record-created" => "The record is created.",
        "record-saved" => "The record is saved.",
        "record-deleted" => "The record is deleted.",
        "invited" => "The invitation is sent.",
        "invitation-revoked" => "The invitation is revoked.",
        "role-changed" => "The member's role is changed.",
        "member-removed" => "The member is removed.",
        "member-sessions-revoked" => "The member's sessions are ended for this organization.",
        "joined" => "You joined the organization.",
        "password-changed" => "Your password is changed.",
        "totp-enabled" => "Two-step sign-in with an authenticator app is on.",
        "totp-disabled" => "Two-step sign-in with an authenticator app is off.",
        "sessions-revoked" => "Your other sessions are signed out.",
        "session-revoked" => "The session is signed out.",
        "role-created" => "The role is created.",
        "role-deleted" => "The role is deleted.",
        "secret-saved" => "The secret is saved. Its value cannot be shown again.",
        "secret-deleted" => "The secret is deleted.",
        "key-created" => "The API key is created.",
        "key-revoked" => "The API key is revoked.",
        _ => return None,
    })
}

/// Renders a page with the console's CSP.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, html).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be shown.").into_response()
        }
    }
}

pub fn ok<T: Template>(page: &T) -> Response {
    render(StatusCode::OK, page)
}

/// After a successful POST: 303 to the page to show, with a notice from the fixed list.
pub fn see_other(path: &str, notice: &str) -> Response {
    let target = if notice.is_empty() { path.to_owned() } else { format!("{path}?notice={notice}") };
    Redirect::to(&target).into_response()
}

/// Field errors of a form, keyed by field name.
#[derive(Default)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }

    pub fn from_validation(errors: Vec<ValidationError>) -> FieldErrors {
        FieldErrors(
            errors.into_iter().map(|e| (e.field.trim_start_matches('/').replace('/', "."), e.message)).collect(),
        )
    }

    /// Errors the form shows inline, or the error as a page.
    pub fn from_app(err: AppError) -> Result<FieldErrors, WebError> {
        match err {
            AppError::Validation(errors) | AppError::InvalidQuery(errors) => Ok(FieldErrors::from_validation(errors)),
            other => Err(WebError::App(other)),
        }
    }

    pub fn one(field: &str, message: impl Into<String>) -> FieldErrors {
        FieldErrors(vec![(field.to_owned(), message.into())])
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    heading: String,
    detail: String,
    error_id: Option<String>,
    sign_in: bool,
}

/// A request the console answers with an error page (or, for no session, the sign-in page).
#[derive(Debug)]
pub enum WebError {
    SignIn,
    Csrf,
    BadForm,
    TooLarge,
    NotFound,
    App(AppError),
}

impl From<AppError> for WebError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Unauthenticated => WebError::SignIn,
            AppError::NotFound => WebError::NotFound,
            other => WebError::App(other),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, heading, detail, error_id) = match self {
            WebError::SignIn => {
                let mut response = Redirect::to("/login").into_response();
                for cookie in crate::session::signed_out_cookies().iter() {
                    if let Ok(value) = HeaderValue::from_str(&cookie.encoded().to_string()) {
                        response.headers_mut().append(header::SET_COOKIE, value);
                    }
                }
                return response;
            }
            WebError::Csrf => (
                403,
                "This form cannot be accepted".to_owned(),
                "It has expired or did not come from this site. Go back, reload the page and send it again.".to_owned(),
                None,
            ),
            WebError::BadForm => {
                (400, "The form could not be read".to_owned(), "Reload the page and try again.".to_owned(), None)
            }
            WebError::TooLarge => (413, "The form is too large".to_owned(), "Send less data at once.".to_owned(), None),
            WebError::NotFound => (
                404,
                "Not found".to_owned(),
                "There is nothing here, or you do not have access to it.".to_owned(),
                None,
            ),
            WebError::App(err) => {
                let problem = ApiError::from(err).0;
                (problem.status, problem.title, problem.detail, problem.error_id)
            }
        };
        let page = ErrorPage {
            l: Layout::plain(heading.clone(), ""),
            status,
            sign_in: status == 401,
            heading,
            detail,
            error_id,
        };
        render(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &page)
    }
}

/// The `{org}` of a console path; an id that does not parse is "not found", like any
/// organization the user cannot see.
pub struct OrgParam(pub OrgId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for OrgParam {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params =
            axum::extract::RawPathParams::from_request_parts(parts, state).await.map_err(|_| WebError::NotFound)?;
        let raw = params.iter().find(|(name, _)| *name == "org").map(|(_, value)| value).ok_or(WebError::NotFound)?;
        raw.parse().map(OrgParam).map_err(|_| WebError::NotFound)
    }
}
