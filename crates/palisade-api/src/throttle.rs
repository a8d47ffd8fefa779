//! Per-IP throttle on the authentication routes (sign-up, sign-in), GCRA in process. It slows
//! credential stuffing from one address; the account lockout (in the database) protects each
//! account whatever the source. `PALISADE_RATE_LIMITS=off` switches this throttle off, never the
//! lockout.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;

/// A keyed GCRA limiter: `per_minute` requests per client address, all of them as a burst.
#[derive(Clone)]
pub struct AuthThrottle {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_minute: u32,
}

impl AuthThrottle {
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).expect("at least one");
        Self { limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(n))), per_minute: n.get() }
    }

    /// Forgets addresses whose budget is full again, so the table does not grow without bound.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

pub async fn middleware(State(throttle): State<Option<AuthThrottle>>, request: Request, next: Next) -> Response {
    let Some(throttle) = throttle else { return next.run(request).await };
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip());
    let Some(ip) = ip else { return next.run(request).await };
    match throttle.limiter.check_key(&ip) {
        Ok(()) => {
            let mut response = next.run(request).await;
            let policy = format!("{};w=60", throttle.per_minute);
            if let Ok(value) = HeaderValue::from_str(&policy) {
                response.headers_mut().insert("ratelimit-policy", value);
            }
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
            tracing::warn!(%ip, "authentication throttle: too many attempts from one address");
            let mut response = Problem::new(
                "rate-limited",
                format!("Too many sign-in or sign-up attempts from your address; retry in {wait} s."),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}
