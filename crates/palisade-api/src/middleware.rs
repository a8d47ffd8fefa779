//! Response shaping every request passes through: security headers, problem bodies for errors
//! produced below the handlers (timeouts, limits), and panics turned into an opaque 500.

use std::any::Any;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;

use crate::problem::Problem;

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'";

pub async fn security_headers(request: Request, next: Next) -> Response<Body> {
    let docs = request.uri().path().starts_with("/docs");
    let authenticated =
        request.headers().contains_key(header::AUTHORIZATION) || request.headers().contains_key(header::COOKIE);
    // HSTS only means something over HTTPS: our own TLS listener, or a trusted proxy's word.
    let https = request.extensions().get::<crate::client_addr::ServedOverTls>().is_some()
        || request.extensions().get::<crate::client_addr::ClientAddr>().is_some_and(|c| c.forwarded_https);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if https {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    // The console sets its own (stricter for scripts, allowing our styles and images).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers
            .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(if docs { DOCS_CSP } else { API_CSP }));
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    // Nothing answered to a credential is cached. Public documents that say how long they may
    // be cached (the JWKS) keep their own rule; everything else outside the docs is no-store.
    if authenticated || (!docs && !headers.contains_key(header::CACHE_CONTROL)) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Errors produced by layers (405, 408, 413 …) come without a body; give them a problem.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response<Body> {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let slug = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => {
            return Problem::internal(&format!("bare {status} from a layer")).into_response();
        }
        _ => "invalid-json",
    };
    let mut problem = Problem::new(slug, status.canonical_reason().unwrap_or("Error"));
    problem.status = status.as_u16();
    problem.into_response()
}

pub fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let cause = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    Problem::internal(&format!("handler panicked: {cause}")).into_response()
}

/// Sheds load instead of collapsing: past `max_concurrent_requests` in flight, answer 503 with
/// `Retry-After` at once (liveness probes are never shed).
pub async fn shed_load(
    axum::extract::State(gate): axum::extract::State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(permit) = gate.try_acquire_owned() else {
        tracing::warn!("overloaded: request shed");
        let mut response =
            Problem::new("overloaded", "The server is at its limit of requests in flight; retry in a second.")
                .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    drop(permit);
    response
}
