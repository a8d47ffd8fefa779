//! Cross-cutting HTTP behaviour: problem+json for every error, limits, request ids, headers,
//! the OpenAPI document, health and readiness.

use palisade_testkit::TestApp;
use serde_json::json;

#[tokio::test]
async fn unknown_routes_methods_and_oversize_bodies_are_problems() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/nothing-here", None).await.assert_problem(404, "not-found");
    app.send("DELETE", "/api/v1/orgs", None, None).await.assert_problem(405, "method-not-allowed");
    let token = app.user("big@example.com").await;
    let before = app.snapshot().await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(palisade_api::BODY_LIMIT + 1));
    app.send_raw("POST", "/api/v1/orgs", Some(&token), "application/json", huge.into_bytes())
        .await
        .assert_problem(413, "payload-too-large");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_unsafe_ones_replaced() {
    let app = TestApp::spawn().await;
    let kept = app.http.get(app.url("/healthz")).header("x-request-id", "abc-123.x").send().await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123.x");
    let generated = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(generated.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let replaced =
        app.http.get(app.url("/healthz")).header("x-request-id", "bad id\twith spaces").send().await.unwrap();
    assert!(replaced.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let long = app.http.get(app.url("/healthz")).header("x-request-id", "a".repeat(200)).send().await.unwrap();
    assert!(long.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
}

#[tokio::test]
async fn security_headers_are_on_every_response_errors_included() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/api/v1/me", "/api/v1/nothing"] {
        let answer = app.get(path, None).await;
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(
            answer.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
    }
}

#[tokio::test]
async fn openapi_documents_every_route_and_problem_type_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/orgs",
        "/api/v1/orgs/{org}",
        "/api/v1/orgs/{org}/members",
        "/api/v1/orgs/{org}/members/{user}/revoke-sessions",
        "/api/v1/me/sessions",
        "/api/v1/me/sessions/{session}",
        "/api/v1/me/sessions/revoke-others",
        "/api/v1/auth/verify-email",
        "/api/v1/auth/forgot-password",
        "/api/v1/auth/reset-password",
        "/api/v1/auth/mfa",
        "/api/v1/auth/step-up",
        "/api/v1/auth/confirm-email-change",
        "/api/v1/me/mfa/totp",
        "/api/v1/me/mfa/totp/confirm",
        "/api/v1/me/password",
        "/api/v1/me/email",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} missing from OpenAPI");
    }
    let description = doc.body["info"]["description"].as_str().unwrap();
    for (slug, ..) in palisade_api::problem::CATALOG {
        assert!(description.contains(&format!("/problems/{slug}")), "{slug} undocumented");
        let about = app.get(&format!("/problems/{slug}"), None).await;
        assert_eq!(about.status, 200);
        assert_eq!(about.body["type"], format!("/problems/{slug}"));
    }
    app.get("/problems/no-such-problem", None).await.assert_problem(404, "not-found");
    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI from vendored assets");
}

/// Found by the schemathesis reliability suite: the middleware's and extractors' problems (415
/// for a body that is not JSON, 400 for malformed JSON, 413, 429, 503, 401) were sent but not
/// declared, so generated clients and schema checks saw undocumented statuses.
#[tokio::test]
async fn openapi_declares_the_problems_every_operation_can_answer() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/v1/openapi.json", None).await;
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let mut expected = Vec::new();
            if operation.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                expected.push("401");
            }
            if path.starts_with("/api/") {
                expected.extend(["429", "503"]);
            }
            for status in expected {
                let declared = &responses.get(status).unwrap_or_else(|| panic!("{method} {path}: {status} undeclared"));
                assert!(declared["content"]["application/problem+json"].is_object(), "{method} {path}: {status}");
            }
        }
    }
    // The answer the suite first saw: a body sent as text/plain.
    let token = app.user("typed@example.com").await;
    let answer = app
        .http
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 415);
    assert!(doc.body["paths"]["/api/v1/orgs"]["post"]["responses"]["415"].is_object());
}

#[tokio::test]
async fn readiness_reports_an_out_of_date_schema() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.body, json!({"status": "ok"}));
    assert_eq!(app.get("/readyz", None).await.body, json!({"status": "ready"}));
    app.admin().await.execute("DELETE FROM palisade.schema_migrations", &[]).await.unwrap();
    app.get("/readyz", None).await.assert_problem(503, "unavailable");
    assert_eq!(app.get("/healthz", None).await.status, 200, "the process itself is fine");
}
