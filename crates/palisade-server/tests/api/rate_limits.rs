//! Request budgets (P1): the strict per-address budget on credential routes, anonymous callers
//! per address, members per user and organization at the organization's plan tier (set by an
//! instance administrator), the IETF headers, 429 with Retry-After, exempt routes, trusted
//! proxies (and spoofed forwarding headers from anyone else).

use palisade_server::config::{Config, RateLimits};
use palisade_testkit::TestApp;
use serde_json::json;

async fn attempt(app: &TestApp, extra: &[(&str, &str)]) -> palisade_testkit::Answer {
    app.send_with(
        "POST",
        "/api/v1/auth/login",
        None,
        extra,
        Some(json!({"email": "nobody@example.com", "password": "whatever-password-1"})),
    )
    .await
}

/// The client address the audit trail recorded for the one failed sign-in.
async fn failed_sign_in_address(app: &TestApp) -> String {
    app.admin()
        .await
        .query_one("SELECT host(ip) FROM palisade.audit_events WHERE action = 'user.login_failed'", &[])
        .await
        .unwrap()
        .get(0)
}

fn budgets(anonymous: u32, standard: u32, professional: u32, enterprise: u32, auth: u32) -> RateLimits {
    RateLimits { anonymous, standard, professional, enterprise, auth, ..RateLimits::default() }
}

#[tokio::test]
async fn credential_routes_have_a_strict_per_address_budget_with_ietf_headers() {
    let app = TestApp::spawn_with(Config { hash_workers: Some(2), ..Config::default() }).await;
    for remaining in (0..5).rev() {
        let answer = attempt(&app, &[]).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
        assert_eq!(answer.header("ratelimit-policy"), Some("\"auth\";q=5;w=60"));
        let current = answer.header("ratelimit").unwrap();
        assert!(current.starts_with(&format!("\"auth\";r={remaining};t=")), "{current}");
    }
    let refused = attempt(&app, &[]).await;
    refused.assert_problem(429, "rate-limited");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "one request comes back every 12 s: {retry}");
    assert!(refused.header("ratelimit").unwrap().starts_with("\"auth\";r=0;"));
    // The sign-in was never tried: no attempt was counted against the account either.
    let tried: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'user.login_failed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tried, 5);
    // Probes, published keys and the documentation are never limited.
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json", "/api/v1/openapi.json"] {
        let answer = app.get(path, None).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(answer.header("ratelimit").is_none(), "{path}");
    }

    let open =
        TestApp::spawn_with(Config { hash_workers: Some(2), rate_limits: RateLimits::off(), ..Config::default() })
            .await;
    for _ in 0..8 {
        let answer = attempt(&open, &[]).await;
        assert_eq!(answer.status, 401);
        assert!(answer.header("ratelimit").is_none());
    }
    open.send(
        "PUT",
        "/api/v1/admin/orgs/org_01h455vb4pex5vsknk084sn02q/plan",
        None,
        Some(json!({"plan": "enterprise"})),
    )
    .await
    .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn members_are_counted_per_organization_at_its_plan_tier_which_an_instance_admin_sets() {
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        rate_limits: budgets(3, 4, 6, 8, 1000),
        ..Config::default()
    })
    .await;
    // Anonymous callers: 3 a minute per address; a forged X-Forwarded-For from an untrusted
    // peer changes nothing.
    for _ in 0..3 {
        app.get("/api/v1/me", None).await.assert_problem(401, "unauthenticated");
    }
    app.get("/api/v1/me", None).await.assert_problem(429, "rate-limited");
    let spoofed = app.send_with("GET", "/api/v1/me", None, &[("x-forwarded-for", "198.51.100.77")], None).await;
    spoofed.assert_problem(429, "rate-limited");
    // A made-up bearer token is an anonymous caller too.
    app.get("/api/v1/me", Some("not-a-token")).await.assert_problem(429, "rate-limited");
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let path = format!("/api/v1/orgs/{org}");

    // Standard tier: 4 a minute for this member in this organization.
    for _ in 0..4 {
        let answer = app.get(&path, Some(&owner)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.header("ratelimit-policy"), Some("\"standard\";q=4;w=60"));
        assert_eq!(answer.body["plan"], "standard");
    }
    app.get(&path, Some(&owner)).await.assert_problem(429, "rate-limited");

    // Only an instance administrator moves an organization to another plan.
    let plan = format!("/api/v1/admin/orgs/{org}/plan");
    let (rival, _) = app.owner_of("rival@example.com", "Rival").await;
    let before = app.snapshot().await;
    app.send("PUT", &plan, Some(&rival), Some(json!({"plan": "enterprise"}))).await.assert_problem(403, "forbidden");
    let admin_token = app.user("ops@example.com").await;
    let email = palisade_core::Email::parse("ops@example.com").unwrap();
    palisade_store::repo::users::grant_instance_admin(&app.admin().await, &email).await.unwrap();
    app.send("PUT", &plan, Some(&admin_token), Some(json!({"plan": "platinum"})))
        .await
        .assert_problem(422, "validation");
    app.send(
        "PUT",
        "/api/v1/admin/orgs/org_01h455vb4pex5vsknk084sn02q/plan",
        Some(&admin_token),
        Some(json!({"plan": "enterprise"})),
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(
        app.snapshot().await.iter().filter(|t| t.0 == "orgs").collect::<Vec<_>>(),
        before.iter().filter(|t| t.0 == "orgs").collect::<Vec<_>>(),
        "refused plan changes write nothing"
    );
    let set = app.send("PUT", &plan, Some(&admin_token), Some(json!({"plan": "enterprise"}))).await;
    assert_eq!(set.status, 204, "{}", set.text);

    // Enterprise: 8 a minute, counted apart from the standard budget.
    for _ in 0..8 {
        let answer = app.get(&path, Some(&owner)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.header("ratelimit-policy"), Some("\"enterprise\";q=8;w=60"));
    }
    app.get(&path, Some(&owner)).await.assert_problem(429, "rate-limited");
    // The change is in the organization's audit trail.
    let events = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'org.plan_changed' AND details->>'plan' = 'enterprise'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(events, 1);
    // A second session of the same user shares the user's budget; another member has their own.
    let second = app.login("owner@example.com").await;
    app.get(&format!("/api/v1/orgs/{org}/members"), Some(&second)).await.assert_problem(429, "rate-limited");
    let (member, _) = crate::collections::member_with_role(&app, &org, "sam@example.com", "member").await;
    assert_eq!(app.get(&path, Some(&member)).await.status, 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted_audited_and_gets_hsts() {
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        rate_limits: budgets(2, 100, 100, 100, 100),
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..Config::default()
    })
    .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        assert_eq!(app.send_with("GET", "/api/v1/me", None, &from("198.51.100.1"), None).await.status, 401);
    }
    app.send_with("GET", "/api/v1/me", None, &from("198.51.100.1"), None).await.assert_problem(429, "rate-limited");
    // Another client behind the same proxy has its own budget.
    assert_eq!(app.send_with("GET", "/api/v1/me", None, &from("198.51.100.2"), None).await.status, 401);

    // The audit trail records the client, not the proxy.
    app.signup("ada@example.com", "Ada").await;
    let failed = app
        .send_with(
            "POST",
            "/api/v1/auth/login",
            None,
            &[("x-forwarded-for", "203.0.113.50")],
            Some(json!({"email": "ada@example.com", "password": "wrong-password-123"})),
        )
        .await;
    assert_eq!(failed.status, 401);
    let ip = failed_sign_in_address(&app).await;
    assert_eq!(ip, "203.0.113.50");

    // HSTS goes out when the trusted proxy says the client used HTTPS, not otherwise.
    let https = app.send_with("GET", "/healthz", None, &[("x-forwarded-proto", "https")], None).await;
    assert_eq!(https.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"));
    assert!(app.get("/healthz", None).await.header("strict-transport-security").is_none());
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored_everywhere() {
    let app = TestApp::spawn_with(Config { hash_workers: Some(2), ..Config::default() }).await;
    app.signup("ada@example.com", "Ada").await;
    let forged = [
        ("x-forwarded-for", "203.0.113.50"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=192.0.2.9;proto=https"),
    ];
    let failed = app
        .send_with(
            "POST",
            "/api/v1/auth/login",
            None,
            &forged,
            Some(json!({"email": "ada@example.com", "password": "wrong-password-123"})),
        )
        .await;
    assert_eq!(failed.status, 401);
    let ip = failed_sign_in_address(&app).await;
    assert_eq!(ip, "127.0.0.1");
    assert!(app.send_with("GET", "/healthz", None, &forged, None).await.header("strict-transport-security").is_none());
}
