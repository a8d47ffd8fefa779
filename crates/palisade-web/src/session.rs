//! Who is using the console and whether a form really came from one of our pages.
//!
//! Signed in: the API's HttpOnly session cookie; the database decides on every request whether
//! the session is alive (each `App` call enters it). Forms carry a CSRF token in `_csrf`: for a
//! signed-in user the same session-bound token the API expects in `X-CSRF-Token`; before sign-in
//! (sign-in, sign-up, reset forms) a token bound to a random `palisade_form` cookie, so a login
//! form cannot be posted from another site either. Browsers that send `Sec-Fetch-Site` must say
//! the request is same-origin.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use palisade_api::ApiState;
use palisade_api::extract::{CSRF_COOKIE, SESSION_COOKIE, csrf_token_for};
use palisade_core::SessionProof;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::page::WebError;

/// The cookie that binds the CSRF token of signed-out forms.
pub const FORM_COOKIE: &str = "palisade_form";
/// The pending second-factor challenge between the password and the code pages.
pub const MFA_COOKIE: &str = "palisade_mfa";
/// The largest form body the console reads (record forms included).
const FORM_LIMIT: usize = 256 * 1024;

/// A signed-in console user: the proof handed to every `App` call, and the form token.
pub struct Session {
    pub proof: SessionProof,
    pub csrf: String,
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    let value = jar.get(SESSION_COOKIE)?.value().to_owned();
    (!value.is_empty() && value.len() <= 512).then_some(value)
}

impl Session {
    fn from_headers(headers: &HeaderMap) -> Option<Session> {
        let token = session_cookie(headers)?;
        Some(Session { proof: SessionProof::Cookie(palisade_auth::hash_token(&token)), csrf: csrf_token_for(&token) })
    }
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Self, Self::Rejection> {
        Session::from_headers(&parts.headers).ok_or(WebError::SignIn)
    }
}

impl axum::extract::OptionalFromRequestParts<ApiState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> Result<Option<Self>, Self::Rejection> {
        Ok(Session::from_headers(&parts.headers))
    }
}

/// The signed-out form token, and the cookie to set when the browser has none yet.
pub struct FormToken {
    pub csrf: String,
    pub set_cookie: Option<CookieJar>,
}

fn form_token_for(cookie: &str) -> String {
    hex::encode(Sha256::digest(format!("palisade-form-csrf-v1:{cookie}").as_bytes()))
}

fn form_cookie(headers: &HeaderMap) -> Option<String> {
    let jar = CookieJar::from_headers(headers);
    let value = jar.get(FORM_COOKIE)?.value().to_owned();
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())).then_some(value)
}

impl FromRequestParts<ApiState> for FormToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        if let Some(existing) = form_cookie(&parts.headers) {
            return Ok(FormToken { csrf: form_token_for(&existing), set_cookie: None });
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let value = hex::encode(bytes);
        let csrf = form_token_for(&value);
        let cookie = Cookie::build((FORM_COOKIE, value))
            .http_only(true)
            .secure(state.secure_cookies)
            .same_site(SameSite::Strict)
            .path("/");
        Ok(FormToken { csrf, set_cookie: Some(CookieJar::new().add(cookie)) })
    }
}

/// Browsers say where a request came from; a cross-site one never changes anything here.
/// Those that send no `Sec-Fetch-Site` still send `Origin` on a form post: its host must be
/// the one the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split_once("://").map(|(_, rest)| rest) == Some(host)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads an urlencoded form body (bounded) into its pairs and the `_csrf` value.
async fn read_form(request: Request) -> Result<(HeaderMap, Vec<(String, String)>), WebError> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(WebError::Csrf);
    }
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(WebError::Csrf);
    }
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| WebError::TooLarge)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| WebError::BadForm)?;
    Ok((parts.headers, pairs))
}

fn presented_csrf(pairs: &[(String, String)]) -> &str {
    pairs.iter().find(|(k, _)| k == "_csrf").map_or("", |(_, v)| v.as_str())
}

/// A form posted by a signed-in user from one of our pages: the session and the fields.
pub struct SessionForm {
    pub session: Session,
    pub fields: Fields,
}

impl FromRequest<ApiState> for SessionForm {
    type Rejection = WebError;

    async fn from_request(request: Request, _: &ApiState) -> Result<Self, Self::Rejection> {
        let (headers, pairs) = read_form(request).await?;
        let session = Session::from_headers(&headers).ok_or(WebError::SignIn)?;
        if !same_origin(&headers) || !constant_time_eq(presented_csrf(&pairs).as_bytes(), session.csrf.as_bytes()) {
            return Err(WebError::Csrf);
        }
        Ok(SessionForm { session, fields: Fields(pairs) })
    }
}

/// A form posted before sign-in from one of our pages.
pub struct AnonForm {
    pub fields: Fields,
}

impl FromRequest<ApiState> for AnonForm {
    type Rejection = WebError;

    async fn from_request(request: Request, _: &ApiState) -> Result<Self, Self::Rejection> {
        let (headers, pairs) = read_form(request).await?;
        let expected = form_cookie(&headers).map(|c| form_token_for(&c)).ok_or(WebError::Csrf)?;
        if !same_origin(&headers) || !constant_time_eq(presented_csrf(&pairs).as_bytes(), expected.as_bytes()) {
            return Err(WebError::Csrf);
        }
        Ok(AnonForm { fields: Fields(pairs) })
    }
}

/// The fields of a posted form, in order (repeated names kept).
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// The cookies a new session sets, exactly as the API's sign-in sets them.
pub fn session_cookies(state: &ApiState, session_token: &str, max_age_seconds: i64) -> CookieJar {
    let max_age = time::Duration::seconds(max_age_seconds);
    let session = Cookie::build((SESSION_COOKIE, session_token.to_owned()))
        .http_only(true)
        .secure(state.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age);
    let csrf = Cookie::build((CSRF_COOKIE, csrf_token_for(session_token)))
        .secure(state.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age);
    CookieJar::new().add(session).add(csrf).add(expired(MFA_COOKIE))
}

/// A cookie that tells the browser to forget one (same name and path as when it was set).
pub fn expired(name: &'static str) -> Cookie<'static> {
    let path = if name == MFA_COOKIE { "/login" } else { "/" };
    Cookie::build((name, "")).path(path).max_age(time::Duration::ZERO).build()
}

/// Cookies that end the console's session in this browser.
pub fn signed_out_cookies() -> CookieJar {
    CookieJar::new().add(expired(SESSION_COOKIE)).add(expired(CSRF_COOKIE)).add(expired(MFA_COOKIE))
}
