//! Cross-origin requests (CORS): only to an organization's routes (`/api/v1/orgs/{org}/…`) and
//! only from the origins that organization allow-lists (`cors_origins`). Never credentials
//! (cookies): cross-origin callers use a bearer token or API key. Everything else — account and
//! sign-in routes, unknown origins — gets no CORS headers, so browsers keep other sites out.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, if-match, x-request-id";
const EXPOSED_HEADERS: &str = "etag, location, x-request-id, retry-after, ratelimit, ratelimit-policy";
/// How long browsers may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";

pub async fn middleware(State(state): State<crate::ApiState>, request: Request, next: Next) -> Response {
    let app = &state.app;
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else { return next.run(request).await };
    let allowed = match (crate::extract::org_in_path(request.uri().path()), origin.to_str()) {
        (Some(org), Ok(origin)) => app.org_edge(org).await.cors_origins.iter().any(|o| o == origin),
        _ => false,
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            let mut refused = Problem::new(
                "cors-origin-not-allowed",
                "This origin may not call this route from a browser; an organization admin can allow it (cors_origins).",
            )
            .into_response();
            refused.headers_mut().insert(header::VARY, HeaderValue::from_static("origin"));
            return refused;
        }
        let mut answer = StatusCode::NO_CONTENT.into_response();
        let headers = answer.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        return answer;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    response
}
