//! HTTP JSON API (axum): routes, extractors, problem+json errors, the OpenAPI document and the
//! middleware every response passes through (request ids, limits, security headers).

pub mod client_addr;
mod cors;
pub mod extract;
mod middleware;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
mod rate_limit_redis;
pub mod request_id;
pub mod routes;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use palisade_app::App;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::Problem;

/// Shared state of every handler. Every request clones it (axum's `State`), so it is one
/// reference count: cloning the `App` itself cost ~4 % of a token refresh's CPU (its policy's
/// strings, a dozen reference counts, and as many drops).
#[derive(Clone)]
pub struct ApiState(std::sync::Arc<ApiShared>);

impl ApiState {
    pub fn new(shared: ApiShared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiShared;
    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

/// What `ApiState` shares.
pub struct ApiShared {
    pub app: App,
    /// Mark cookies Secure (the public URL is https).
    pub secure_cookies: bool,
    /// Request budgets (`rate_limit`); `None` when rate limits are off.
    pub limiter: Option<std::sync::Arc<rate_limit::Limiter>>,
    /// Proxies whose forwarding headers name the client (`client_addr`).
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Requests allowed in flight at once; past it, 503 (`middleware::shed_load`).
    pub max_concurrent_requests: usize,
    /// A request that takes longer (reading its body included) is answered with 408.
    pub request_timeout: Duration,
    /// An audit export whose client takes nothing for this long is stopped.
    pub export_stall: Duration,
}

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: ApiState) -> Router {
    router_with(state, Router::new())
}

/// The API and `extra` routes (the web console) behind the same middleware: request ids,
/// client address, security headers, load shedding, rate limits, timeouts and panics.
pub fn router_with(state: ApiState, extra: Router) -> Router {
    let credential_routes = Router::new()
        .route("/api/v1/auth/signup", post(routes::auth::signup))
        .route("/api/v1/auth/login", post(routes::auth::login))
        .route("/api/v1/auth/forgot-password", post(routes::auth::forgot_password))
        .route("/api/v1/auth/reset-password", post(routes::auth::reset_password))
        .route("/api/v1/auth/mfa", post(routes::auth::mfa))
        .route("/api/v1/auth/refresh", post(routes::auth::refresh))
        .route("/api/v1/auth/webauthn", post(routes::webauthn::login))
        .route("/api/v1/auth/passkey/start", post(routes::webauthn::start_passkey))
        .route("/api/v1/auth/step-up/webauthn", post(routes::webauthn::start_step_up))
        .route("/api/v1/auth/step-up", post(routes::auth::step_up));
    let api = Router::new()
        .merge(credential_routes)
        .route("/api/v1/auth/logout", post(routes::auth::logout))
        .route("/api/v1/auth/verify-email", post(routes::auth::verify_email))
        .route("/api/v1/auth/confirm-email-change", post(routes::auth::confirm_email_change))
        .route("/api/v1/me", get(routes::me::me))
        .route("/api/v1/me/sessions", get(routes::me::sessions))
        .route("/api/v1/me/mfa/totp", post(routes::me::start_totp).delete(routes::me::disable_totp))
        .route("/api/v1/me/password", post(routes::me::change_password))
        .route("/api/v1/me/email", post(routes::me::change_email))
        .route("/api/v1/me/mfa/totp/confirm", post(routes::me::confirm_totp))
        .route("/api/v1/me/webauthn", get(routes::webauthn::list))
        .route("/api/v1/me/webauthn/register/start", post(routes::webauthn::start_registration))
        .route("/api/v1/me/webauthn/register/finish", post(routes::webauthn::finish_registration))
        .route("/api/v1/me/webauthn/{id}", axum::routing::delete(routes::webauthn::remove))
        .route("/api/v1/me/sessions/revoke-others", post(routes::me::revoke_other_sessions))
        .route("/api/v1/me/sessions/{session}", axum::routing::delete(routes::me::revoke_session))
        .route("/api/v1/orgs", post(routes::orgs::create).get(routes::orgs::list))
        .route(
            "/api/v1/orgs/{org}",
            get(routes::orgs::get).patch(routes::orgs::update).delete(routes::org_deletion::schedule),
        )
        .route("/api/v1/orgs/{org}/deletion", axum::routing::delete(routes::org_deletion::cancel))
        .route("/api/v1/orgs/{org}/members", get(routes::orgs::members))
        .route("/api/v1/orgs/{org}/roles", get(routes::orgs::roles).post(routes::roles::create))
        .route(
            "/api/v1/orgs/{org}/roles/{role}",
            axum::routing::put(routes::roles::update).delete(routes::roles::delete),
        )
        .route("/api/v1/orgs/{org}/access-review", get(routes::roles::access_review))
        .route("/api/v1/orgs/{org}/invitations", post(routes::members::invite).get(routes::members::invitations))
        .route("/api/v1/orgs/{org}/invitations/{invitation}", axum::routing::delete(routes::members::revoke_invitation))
        .route(
            "/api/v1/orgs/{org}/members/{user}",
            axum::routing::patch(routes::members::change_role).delete(routes::members::remove),
        )
        .route("/api/v1/orgs/{org}/collections", post(routes::collections::create).get(routes::collections::list))
        .route(
            "/api/v1/orgs/{org}/collections/{name}",
            get(routes::collections::get).put(routes::collections::change_schema).delete(routes::collections::delete),
        )
        .route(
            "/api/v1/orgs/{org}/collections/{name}/records",
            post(routes::records::create).get(routes::records::list),
        )
        .route(
            "/api/v1/orgs/{org}/collections/{name}/records/{record}",
            get(routes::records::get)
                .put(routes::records::replace)
                .patch(routes::records::patch)
                .delete(routes::records::delete),
        )
        .route("/api/v1/admin/orgs/{org}/plan", axum::routing::put(routes::admin::set_plan))
        .route("/api/v1/orgs/{org}/api-keys", post(routes::api_keys::create).get(routes::api_keys::list))
        .route("/api/v1/orgs/{org}/api-keys/{key}", axum::routing::delete(routes::api_keys::revoke))
        .route("/api/v1/orgs/{org}/api-keys/{key}/rotate", post(routes::api_keys::rotate))
        .route("/api/v1/orgs/{org}/secrets", post(routes::secrets::create).get(routes::secrets::list))
        .route("/api/v1/orgs/{org}/keys", get(routes::keys::status))
        .route(
            "/api/v1/orgs/{org}/secrets/{name}",
            axum::routing::put(routes::secrets::replace).delete(routes::secrets::delete),
        )
        .route("/api/v1/orgs/{org}/audit-events", get(routes::audit::list))
        .route("/api/v1/orgs/{org}/audit-events/export", get(routes::audit::export))
        .route("/api/v1/orgs/{org}/audit-events/verify", get(routes::audit::verify).post(routes::audit::verify_against))
        .route("/api/v1/orgs/{org}/audit-checkpoints", get(routes::audit::checkpoints))
        .route("/api/v1/orgs/{org}/audit-checkpoints/latest", get(routes::audit::latest_checkpoint))
        .route("/api/v1/invitations/accept", post(routes::members::accept))
        .route("/api/v1/orgs/{org}/members/{user}/revoke-sessions", post(routes::orgs::revoke_member_sessions))
        .route("/.well-known/jwks.json", get(routes::system::jwks))
        .route("/healthz", get(routes::system::healthz))
        .route("/readyz", get(routes::system::readyz))
        .route("/problems/{slug}", get(routes::system::problem_type))
        .with_state(state.clone());
    Router::new()
        .merge(api)
        .merge(extra)
        .merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", openapi::ApiDoc::openapi()))
        .fallback(|| async { Problem::new("not-found", "No such resource.") })
        .method_not_allowed_fallback(|| async {
            Problem::new("method-not-allowed", "This path does not accept this method.")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, state.request_timeout))
        // Outside the timeout, so its bare 408 gets a problem body too.
        .layer(axum::middleware::from_fn(middleware::problem_for_bare_errors))
        .layer(CatchPanicLayer::custom(middleware::panic_to_problem))
        // CORS inside the budgets: a preflight's lookup of the organization's origins is paid for.
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::middleware))
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(tokio::sync::Semaphore::new(state.max_concurrent_requests.max(1))),
            middleware::shed_load,
        ))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.trusted_proxies.clone(), client_addr::middleware))
        .layer(axum::middleware::from_fn(request_id::middleware))
}
