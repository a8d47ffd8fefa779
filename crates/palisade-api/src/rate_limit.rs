//! Tiered request budgets (control P1), GCRA: anonymous callers per address; signed-in people
//! per user (browser sessions per session) and API keys per key, each per organization at that
//! organization's plan tier; sign-in, sign-up, reset and MFA routes on a stricter per-address
//! budget. In process by default; with Redis, an atomic script (concurrent checks batched into
//! one call, `rate_limit_redis`) makes every node share the same budgets. Every answer carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers); over budget: 429 problem+json with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use palisade_app::App;
use palisade_core::Plan;
use sha2::{Digest, Sha256};

use crate::extract::SESSION_COOKIE;
use crate::problem::Problem;

/// Requests per minute for each kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub anonymous: u32,
    pub standard: u32,
    pub professional: u32,
    pub enterprise: u32,
    /// Sign-in, sign-up, password reset, second-factor and step-up routes, per address.
    pub auth: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self { anonymous: 10, standard: 100, professional: 500, enterprise: 2000, auth: 5 }
    }
}

/// What nodes do when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFailure {
    /// Count in process (each node its own budget) and alert: the default.
    Local,
    /// Let requests through unlimited and alert.
    Open,
    /// Refuse with 503 and alert.
    Closed,
}

impl RedisFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisFailure::Local => "local",
            RedisFailure::Open => "open",
            RedisFailure::Closed => "closed",
        }
    }
}

/// The budget a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Anonymous,
    Auth,
    Plan(Plan),
}

impl Class {
    const ALL: [Class; 5] = [
        Class::Anonymous,
        Class::Auth,
        Class::Plan(Plan::Standard),
        Class::Plan(Plan::Professional),
        Class::Plan(Plan::Enterprise),
    ];

    /// The policy name in the headers and in Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Class::Anonymous => "anonymous",
            Class::Auth => "auth",
            Class::Plan(plan) => plan.as_str(),
        }
    }

    fn per_minute(self, budgets: &Budgets) -> u32 {
        match self {
            Class::Anonymous => budgets.anonymous,
            Class::Auth => budgets.auth,
            Class::Plan(Plan::Standard) => budgets.standard,
            Class::Plan(Plan::Professional) => budgets.professional,
            Class::Plan(Plan::Enterprise) => budgets.enterprise,
        }
        .max(1)
    }
}

/// One check's outcome, for the headers.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset: u64,
    /// Seconds until the next request would be allowed (when refused).
    pub retry_after: u64,
}

/// An in-process keyed GCRA limiter that reports the remaining budget.
type LocalLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct RedisBackend {
    shared: crate::rate_limit_redis::SharedBudgets,
    on_failure: RedisFailure,
    /// Unix seconds of the last alert, so a Redis outage logs once per 10 s, not per request.
    last_alert: AtomicU64,
    /// Unix milliseconds until which Redis is not asked after a failure: during an outage
    /// requests take the fallback at once instead of each waiting out a timeout.
    skip_until_ms: AtomicU64,
}

/// How long a node leaves Redis alone after a failed call.
const REDIS_BACKOFF_MS: u64 = 2_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The limiter every node runs. See the module docs.
pub struct Limiter {
    budgets: Budgets,
    local: HashMap<Class, LocalLimiter>,
    redis: Option<RedisBackend>,
}

/// How a `redis_url` reaches Redis (E1 in `palisade controls check`): evidence, or the problem.
pub fn judge_redis_link(url: &str) -> Result<String, String> {
    crate::rate_limit_redis::judge_link(url)
}

impl Limiter {
    /// In-process budgets; `redis_url` makes them shared (`rate_limit_redis`).
    /// `redis_ca_pem`: with a `rediss://` URL, trust only these CA certificates (PEM).
    pub fn new(
        budgets: Budgets,
        redis_url: Option<&str>,
        redis_ca_pem: Option<&[u8]>,
        on_failure: RedisFailure,
    ) -> Result<Self, String> {
        let local = Class::ALL
            .into_iter()
            .map(|class| {
                let n = NonZeroU32::new(class.per_minute(&budgets)).expect("at least one");
                (class, RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>())
            })
            .collect();
        let redis = match redis_url {
            None => None,
            Some(url) => Some(RedisBackend {
                shared: crate::rate_limit_redis::SharedBudgets::connect(url, redis_ca_pem)?,
                on_failure,
                last_alert: AtomicU64::new(0),
                skip_until_ms: AtomicU64::new(0),
            }),
        };
        Ok(Self { budgets, local, redis })
    }

    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// Counts one request of `class` for `key`; `None` means "refuse, the shared store is
    /// unreachable and the configuration says fail closed".
    pub async fn check(&self, class: Class, key: &str) -> Option<Decision> {
        let Some(redis) = &self.redis else { return Some(self.check_local(class, key)) };
        let limit = class.per_minute(&self.budgets);
        if unix_ms() < redis.skip_until_ms.load(Ordering::Relaxed) {
            return self.fallback(redis.on_failure, class, key);
        }
        let answer = redis.shared.check(format!("palisade:rl:{}:{key}", class.name()), limit).await;
        match answer {
            Ok((allowed, remaining, retry_after, reset)) => Some(Decision {
                allowed: allowed == 1,
                limit,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
                reset: seconds(&reset),
                retry_after: seconds(&retry_after).max(u64::from(allowed != 1)),
            }),
            Err(err) => {
                let now_ms = unix_ms();
                redis.skip_until_ms.store(now_ms + REDIS_BACKOFF_MS, Ordering::Relaxed);
                let now = now_ms / 1000;
                if now.saturating_sub(redis.last_alert.swap(now, Ordering::Relaxed)) >= 10 {
                    tracing::error!(
                        alert = "rate_limit_store_unreachable",
                        error = %err,
                        fallback = ?redis.on_failure,
                        "ALERT: Redis for shared rate limits is unreachable; check PALISADE_REDIS_URL and the Redis server"
                    );
                }
                self.fallback(redis.on_failure, class, key)
            }
        }
    }

    /// What to answer without Redis (see `RedisFailure`).
    fn fallback(&self, on_failure: RedisFailure, class: Class, key: &str) -> Option<Decision> {
        let limit = class.per_minute(&self.budgets);
        match on_failure {
            RedisFailure::Local => Some(self.check_local(class, key)),
            RedisFailure::Open => Some(Decision { allowed: true, limit, remaining: limit, reset: 0, retry_after: 0 }),
            RedisFailure::Closed => None,
        }
    }

    fn check_local(&self, class: Class, key: &str) -> Decision {
        let limit = class.per_minute(&self.budgets);
        let interval = 60.0 / f64::from(limit);
        let limiter = &self.local[&class];
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = (f64::from(limit - remaining.min(limit)) * interval).ceil() as u64;
                Decision { allowed: true, limit, remaining, reset, retry_after: 0 }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs_f64();
                let reset = (wait + f64::from(limit - 1) * interval).ceil() as u64;
                Decision { allowed: false, limit, remaining: 0, reset, retry_after: wait.ceil().max(1.0) as u64 }
            }
        }
    }

    /// Forgets in-process buckets that are full again, so the tables do not grow without bound.
    pub fn forget_idle(&self) {
        for limiter in self.local.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn seconds(text: &str) -> u64 {
    text.parse::<f64>().map(|s| s.max(0.0).ceil() as u64).unwrap_or(0)
}

/// Never limited: probes, metrics, published keys, documentation and static assets.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/api/v1/openapi.json")
        || path.starts_with("/.well-known/")
        || path.starts_with("/docs")
        || path.starts_with("/problems/")
        || path.starts_with("/static/")
}

/// Routes that take a password, a code or a one-time token: the stricter per-address budget.
const AUTH_ROUTES: &[&str] = &[
    "/api/v1/auth/signup",
    "/api/v1/auth/login",
    "/api/v1/auth/forgot-password",
    "/api/v1/auth/reset-password",
    "/api/v1/auth/mfa",
    "/api/v1/auth/webauthn",
    "/api/v1/auth/passkey/start",
    "/api/v1/auth/step-up",
    "/api/v1/auth/step-up/webauthn",
    "/api/v1/auth/verify-email",
    "/api/v1/auth/refresh",
];

/// The web console's forms that take a password, a code or a one-time token (the console's
/// own paths, listed here because the limiter owns the budgets).
pub const CONSOLE_CREDENTIAL_FORMS: &[&str] = &[
    "/login",
    "/login/mfa",
    "/login/mfa/key",
    "/login/passkey",
    "/signup",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/accept-invite",
    "/confirm-email-change",
    // Account changes re-prove the password (step-up), like POST /api/v1/auth/step-up.
    "/account/password",
    "/account/email",
    "/account/totp/disable",
];

/// The console's answer over budget: a plain page in its stylesheet (the text holds only the
/// budget's name and numbers), under a CSP that allows nothing else.
fn refused_page(detail: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Too many requests · Palisade</title><link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
         <body><main id=\"main\"><section class=\"card narrow\"><h1>Too many requests</h1><p>{detail}</p>\
         <p><a href=\"/\">Back to the start page</a></p></section></main></body></html>"
    );
    let mut response = (axum::http::StatusCode::TOO_MANY_REQUESTS, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    response
}

/// A console form that takes a password or code: one of the fixed paths, or a form whose path
/// holds an id (`/orgs/{org}/api-keys` asks for the password; so does removing a security key).
fn console_credential_form(path: &str) -> bool {
    CONSOLE_CREDENTIAL_FORMS.contains(&path)
        || path.strip_prefix("/orgs/").and_then(|rest| rest.split_once('/')).is_some_and(|(_, tail)| tail == "api-keys")
        || path.strip_prefix("/account/keys/").is_some_and(|rest| rest.ends_with("/remove"))
}

fn digest_hex(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Who is counted: a verified user, a session cookie or an API key — or, for anything else
/// (no credential, or one that does not verify), the client address.
fn identity(app: &App, headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    {
        if palisade_auth::api_key::looks_like_api_key(bearer) {
            return palisade_auth::api_key::well_formed(bearer).then(|| format!("k:{}", digest_hex(bearer)));
        }
        let now = app.clock.now().unix_timestamp();
        return app.tokens.verify(bearer, now).ok().map(|access| format!("u:{}", access.user));
    }
    let jar = CookieJar::from_headers(headers);
    jar.get(SESSION_COOKIE).map(|cookie| format!("s:{}", digest_hex(cookie.value())))
}

pub async fn middleware(State(state): State<crate::ApiState>, request: Request, next: Next) -> Response {
    let Some(limiter) = state.limiter.as_ref() else { return next.run(request).await };
    let path = request.uri().path();
    if exempt(path) {
        return next.run(request).await;
    }
    let ip =
        crate::extract::request_client_ip(&request).map_or_else(|| "unknown".to_owned(), |ip: IpAddr| ip.to_string());
    let preflight = request.method() == axum::http::Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let credential_form = request.method() == axum::http::Method::POST && console_credential_form(path);
    // A person in the console gets a page, not problem+json.
    let console_page = !path.starts_with("/api/")
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    let (class, key) = if AUTH_ROUTES.contains(&path) || credential_form {
        (Class::Auth, format!("ip:{ip}"))
    } else if preflight {
        // Browsers send one before cross-origin calls (cached 10 minutes): counted per address
        // at the standard budget, apart from the anonymous one.
        (Class::Plan(Plan::Standard), format!("preflight:ip:{ip}"))
    } else {
        match identity(&state.app, request.headers()) {
            None => (Class::Anonymous, format!("ip:{ip}")),
            Some(who) => match crate::extract::org_in_path(path) {
                Some(org) => (Class::Plan(state.app.org_edge(org).await.plan), format!("{who}:o:{org}")),
                None => (Class::Plan(Plan::Standard), who),
            },
        }
    };
    let Some(decision) = limiter.check(class, &key).await else {
        let mut response =
            Problem::new("unavailable", "Request budgets cannot be checked right now; retry shortly.").into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        tracing::warn!(policy = class.name(), "rate limit: request refused");
        let detail = format!(
            "Too many requests: the {} budget is {} per minute. Retry in {} s.",
            class.name(),
            decision.limit,
            decision.retry_after
        );
        let mut response =
            if console_page { refused_page(&detail) } else { Problem::new("rate-limited", detail).into_response() };
        if let Ok(value) = HeaderValue::from_str(&decision.retry_after.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    };
    let headers = response.headers_mut();
    let policy = format!("\"{}\";q={};w=60", class.name(), decision.limit);
    let current = format!("\"{}\";r={};t={}", class.name(), decision.remaining, decision.reset);
    if let (Ok(policy), Ok(current)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&current)) {
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", current);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::console_credential_form;

    #[test]
    fn console_forms_that_check_a_password_take_the_auth_budget() {
        for path in [
            "/login",
            "/account/password",
            "/orgs/org_01h2xcejqtf2nbrexx3vqjhp41/api-keys",
            "/account/keys/wac_01h455vb4pex5vsknk084sn02q/remove",
        ] {
            assert!(console_credential_form(path), "{path}");
        }
        for path in ["/orgs", "/orgs/org_x/api-keys/key_y/revoke", "/orgs/org_x/secrets", "/account/keys"] {
            assert!(!console_credential_form(path), "{path}");
        }
    }
}
