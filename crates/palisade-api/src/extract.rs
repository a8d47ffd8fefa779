//! Extractors: who is calling (a signed access token from a Bearer header, or a session cookie), which org a
//! path names, where the request came from, and JSON bodies whose rejections are problems.
//! Extractors prove identity only; they open no transaction.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum_extra::extract::cookie::CookieJar;
use palisade_app::RequestMeta;
use palisade_auth::jwt::TokenRejected;
use palisade_core::{OrgId, SessionProof};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::ApiState;
use crate::problem::Problem;
use crate::request_id::RequestId;

pub const SESSION_COOKIE: &str = "palisade_session";
pub const CSRF_COOKIE: &str = "palisade_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token bound to a session token: only someone who can read the (HttpOnly) session
/// cookie's value, i.e. our own pages and the client it was issued to, can compute it.
pub fn csrf_token_for(session_token: &str) -> String {
    let digest = Sha256::digest(format!("palisade-csrf-v1:{session_token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A caller that presented a credential: a signed access token (`Authorization: Bearer`), whose
/// signature, issuer, audience and expiry are checked here, or the browser's session cookie.
/// Whether the session behind it is alive is decided in the database, in the same transaction
/// as the work.
pub struct Caller {
    pub proof: SessionProof,
}

fn unauthenticated(detail: &str) -> Problem {
    Problem::new("unauthenticated", detail)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| unauthenticated("Use 'Authorization: Bearer <access_token>'."))?;
            if palisade_auth::api_key::looks_like_api_key(token) {
                return api_key_caller(parts, state, token).map_err(|problem| *problem);
            }
            let now = state.app.clock.now().unix_timestamp();
            return match state.app.tokens.verify(token, now) {
                Ok(access) => match state.app.access_proof(access.session) {
                    Ok(proof) => Ok(Caller { proof }),
                    Err(err) => Err(crate::problem::ApiError::from(err).0),
                },
                Err(TokenRejected::Expired) => Err(unauthenticated(
                    "The access token has expired: get a new one from POST /api/v1/auth/refresh, or sign in again.",
                )),
                Err(_) => Err(unauthenticated("The access token is not valid; sign in again.")),
            };
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(unauthenticated("Sign in first: no access token or session cookie was sent."));
        };
        let token = cookie.value();
        if token.is_empty() || token.len() > 512 {
            return Err(unauthenticated("The session cookie is not valid; sign in again."));
        }
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            let expected = csrf_token_for(token);
            if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
                return Err(Problem::new(
                    "csrf-failed",
                    "Send the X-CSRF-Token header with the value of the palisade_csrf cookie.",
                ));
            }
        }
        Ok(Caller { proof: SessionProof::Cookie(palisade_auth::hash_token(token)) })
    }
}

/// Where API keys work: their own organization's routes, except managing keys (that needs a
/// person who can step up).
const API_KEY_ROUTES: &str = "/api/v1/orgs/{org}";
const API_KEY_MANAGEMENT: &str = "/api/v1/orgs/{org}/api-keys";

fn api_key_caller(parts: &Parts, state: &ApiState, token: &str) -> Result<Caller, Box<Problem>> {
    let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("");
    if !route.starts_with(API_KEY_ROUTES) {
        return Err(Box::new(unauthenticated(
            "API keys work only on organization routes (/api/v1/orgs/{org}/…); sign in for account routes.",
        )));
    }
    if route.starts_with(API_KEY_MANAGEMENT) {
        return Err(Box::new(Problem::new(
            "forbidden",
            "API keys cannot manage API keys; a member must sign in to do this.",
        )));
    }
    state.app.api_key_proof(token, client_ip(parts)).map(|proof| Caller { proof }).ok_or_else(|| {
        Box::new(unauthenticated("The API key is not valid (mistyped or truncated?): check it and retry."))
    })
}

/// The address the request came from (`client_addr`: forwarding headers only from trusted
/// proxies).
pub fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    client_ip_of(&parts.extensions)
}

/// The same, for middleware that holds the whole request.
pub fn request_client_ip(request: &Request) -> Option<std::net::IpAddr> {
    client_ip_of(request.extensions())
}

fn client_ip_of(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<crate::client_addr::ClientAddr>()
        .map(|client| client.ip)
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The organization named in the path. An id that does not parse is "not found", exactly like
/// an id that parses but is not visible, so ids cannot be probed.
pub struct OrgPath(pub OrgId);

impl<S: Send + Sync> FromRequestParts<S> for OrgPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || Problem::new("not-found", "No such resource.");
        let Path(raw): Path<String> = Path::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        raw.parse().map(OrgPath).map_err(|_| not_found())
    }
}

/// The organization a raw path names (`/api/v1/orgs/{org}/…`), if it parses: for middleware that
/// runs before routing (rate limits, CORS).
pub fn org_in_path(path: &str) -> Option<OrgId> {
    path.strip_prefix("/api/v1/orgs/")?.split('/').next()?.parse().ok()
}

/// One typed id from the path (e.g. a session id), with the same 404-on-garbage rule.
pub struct IdPath<T>(pub T);

impl<S: Send + Sync, T: std::str::FromStr + Send> FromRequestParts<S> for IdPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || Problem::new("not-found", "No such resource.");
        let Path(raw): Path<String> = Path::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        raw.parse().map(IdPath).map_err(|_| not_found())
    }
}

/// An organization and one typed id inside it from the path (`/orgs/{org}/members/{user}`,
/// `/orgs/{org}/invitations/{invitation}`), with the same 404-on-garbage rule.
pub struct OrgAnd<T>(pub OrgId, pub T);

impl<S: Send + Sync, T: std::str::FromStr + Send> FromRequestParts<S> for OrgAnd<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || Problem::new("not-found", "No such resource.");
        let Path((org, id)): Path<(String, String)> =
            Path::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        Ok(OrgAnd(org.parse().map_err(|_| not_found())?, id.parse().map_err(|_| not_found())?))
    }
}

/// Where the request came from, for the audit log.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        Ok(Meta(RequestMeta { ip, user_agent, request_id }))
    }
}

/// A JSON body. Malformed JSON → 400, nested deeper than `MAX_JSON_DEPTH` → 400, wrong
/// content type → 415, unknown/missing/mistyped fields → 422, oversize → 413, each as a problem.
pub struct ApiJson<T>(pub T);

/// The deepest nesting of arrays and objects a body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// Nesting depth of a parsed document, stopping as soon as it passes `limit`.
fn deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
        serde_json::Value::Array(items) => Box::new(items.iter()),
        serde_json::Value::Object(fields) => Box::new(fields.values()),
        _ => return false,
    };
    limit == 0 || children.into_iter().any(|child| deeper_than(child, limit - 1))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The generic document first (serde_json refuses nesting past 128 on its own), then
        // our depth limit, then the typed shape with the path of whatever does not fit.
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_problem(rejection)),
        };
        if deeper_than(&value, MAX_JSON_DEPTH) {
            return Err(Problem::new(
                "json-too-deep",
                format!("The body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels."),
            ));
        }
        serde_path_to_error::deserialize(value).map(ApiJson).map_err(|err| {
            let path = err.path().to_string();
            let inner = without_values(&err.into_inner().to_string());
            let detail = if path == "." { inner } else { format!("{path}: {inner}") };
            let mut problem = Problem::new("validation", detail.clone());
            problem.errors = vec![crate::problem::FieldError { pointer: String::new(), detail }];
            problem
        })
    }
}

/// serde's messages quote the offending value (`invalid type: string "hunter2", expected …`).
/// A problem never echoes a value, which may be a password or a secret: only its kind.
fn without_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(at) = message.find(marker) else { continue };
        let (head, rest) = message.split_at(at + marker.len());
        let Some((unexpected, expected)) = rest.split_once(", expected") else { continue };
        let kind = unexpected.split(['`', '"']).next().unwrap_or("").trim_end();
        let head = if kind.is_empty() { head.trim_end() } else { head };
        return format!("{head}{kind}, expected{expected}");
    }
    message.to_owned()
}

fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            // serde's message names the field and what was expected, with the value removed.
            let message = err.body_text();
            let detail = without_values(
                message.strip_prefix("Failed to deserialize the JSON body into the target type: ").unwrap_or(&message),
            );
            let detail = detail.as_str();
            let mut problem = Problem::new("validation", detail.to_owned());
            problem.errors = vec![crate::problem::FieldError { pointer: String::new(), detail: detail.to_owned() }];
            problem
        }
        JsonRejection::JsonSyntaxError(_) => Problem::new("invalid-json", "The body is not valid JSON."),
        JsonRejection::MissingJsonContentType(_) => {
            Problem::new("unsupported-media-type", "Send the body with 'Content-Type: application/json'.")
        }
        JsonRejection::BytesRejection(err) if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new("payload-too-large", "The body is larger than the 1 MiB limit.")
        }
        other => Problem::new("invalid-json", format!("The body could not be read: {}", other.body_text())),
    }
}

/// An organization, a collection name and a record id from the path
/// (`/orgs/{org}/collections/{name}/records/{record}`), with the same 404-on-garbage rule.
pub struct RecordPath(pub OrgId, pub String, pub palisade_core::RecordId);

impl<S: Send + Sync> FromRequestParts<S> for RecordPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || Problem::new("not-found", "No such resource.");
        let Path((org, name, id)): Path<(String, String, String)> =
            Path::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        Ok(RecordPath(org.parse().map_err(|_| not_found())?, name, id.parse().map_err(|_| not_found())?))
    }
}

/// The `If-Match` precondition as a record version: absent or `*` → `None` (no precondition);
/// one strong entity tag `"N"` → `Some(N)`; anything else can never match → 412.
pub struct IfMatch(pub Option<i32>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else { return Ok(IfMatch(None)) };
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        text.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<i32>().ok())
            .map(|v| IfMatch(Some(v)))
            .ok_or_else(|| {
                Problem::new(
                    "precondition-failed",
                    "If-Match must be the record's ETag as sent (e.g. \"3\"); read the record again and retry.",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_lose_the_values_they_quote() {
        assert_eq!(
            without_values("invalid type: integer `12345`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_values("value: invalid type: string \"hunter2\", expected u32 at line 1 column 9"),
            "value: invalid type: string, expected u32 at line 1 column 9"
        );
        assert_eq!(
            without_values("unknown variant `s3cr3t`, expected one of `a`, `b`"),
            "unknown variant, expected one of `a`, `b`"
        );
        assert_eq!(without_values("missing field `name`"), "missing field `name`");
    }
}
