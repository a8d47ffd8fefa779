//! CORS: an organization's API routes answer browsers from the origins it allow-lists, and
//! nothing else does.

use palisade_testkit::TestApp;
use serde_json::json;

use crate::collections::member_with_role;

const APP: &str = "https://app.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str) -> palisade_testkit::Answer {
    app.send_with(
        "OPTIONS",
        path,
        None,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn an_organization_allows_exactly_the_origins_it_lists() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let (_, other_org) = app.owner_of("rival@example.com", "Rival").await;
    let path = format!("/api/v1/orgs/{org}/collections");

    // Nobody is allowed until the organization says so.
    preflight(&app, &path, APP).await.assert_problem(403, "cors-origin-not-allowed");
    let set = app
        .send(
            "PATCH",
            &format!("/api/v1/orgs/{org}"),
            Some(&owner),
            Some(json!({"cors_origins": [APP, "http://localhost:3000"]})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["cors_origins"], json!([APP, "http://localhost:3000"]));

    let ok = preflight(&app, &path, APP).await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    assert!(ok.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(ok.header("access-control-allow-headers").unwrap().contains("authorization"));
    assert!(ok.header("access-control-allow-credentials").is_none(), "never cookies cross-origin");

    let answer = app.send_with("GET", &path, Some(&owner), &[("origin", APP)], None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    assert!(answer.header("access-control-expose-headers").unwrap().contains("ratelimit"));

    // Other origins, other organizations and non-organization routes: no CORS at all.
    for origin in ["https://evil.example", "https://app.example.com.evil.example", "null"] {
        preflight(&app, &path, origin).await.assert_problem(403, "cors-origin-not-allowed");
        let answer = app.send_with("GET", &path, Some(&owner), &[("origin", origin)], None).await;
        assert!(answer.header("access-control-allow-origin").is_none(), "{origin}");
    }
    preflight(&app, &format!("/api/v1/orgs/{other_org}/collections"), APP)
        .await
        .assert_problem(403, "cors-origin-not-allowed");
    preflight(&app, "/api/v1/auth/login", APP).await.assert_problem(403, "cors-origin-not-allowed");
    preflight(&app, "/api/v1/me", APP).await.assert_problem(403, "cors-origin-not-allowed");

    // Taking an origin off the list takes effect at once on this node.
    let cleared =
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&owner), Some(json!({"cors_origins": []}))).await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    preflight(&app, &path, APP).await.assert_problem(403, "cors-origin-not-allowed");
    let changes = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'settings.changed' AND details ? 'cors_origins'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(changes, 2);
}

#[tokio::test]
async fn origins_are_checked_and_only_admins_of_this_organization_set_them() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let (rival, _) = app.owner_of("rival@example.com", "Rival").await;
    let (member, _) = member_with_role(&app, &org, "sam@example.com", "member").await;
    let settings = format!("/api/v1/orgs/{org}");
    let before = app.snapshot().await;
    for (origins, pointer) in [
        (json!(["*"]), "/cors_origins/0"),
        (json!(["https://app.example.com/path"]), "/cors_origins/0"),
        (json!(["https://app.example.com/"]), "/cors_origins/0"),
        (json!(["http://app.example.com"]), "/cors_origins/0"),
        (json!(["https://*.example.com"]), "/cors_origins/0"),
        (json!(["https://user:pw@app.example.com"]), "/cors_origins/0"),
        (json!([APP, "javascript:alert(1)"]), "/cors_origins/1"),
        (json!((0..21).map(|i| format!("https://a{i}.example.com")).collect::<Vec<_>>()), "/cors_origins"),
    ] {
        let answer = app.send("PATCH", &settings, Some(&owner), Some(json!({"cors_origins": origins}))).await;
        answer.assert_problem(422, "validation");
        assert!(
            answer.body["errors"].as_array().unwrap().iter().any(|e| e["pointer"] == pointer),
            "{origins}: {}",
            answer.text
        );
    }
    app.send("PATCH", &settings, Some(&member), Some(json!({"cors_origins": [APP]})))
        .await
        .assert_problem(403, "forbidden");
    app.send("PATCH", &settings, Some(&rival), Some(json!({"cors_origins": [APP]})))
        .await
        .assert_problem(404, "not-found");
    app.send("PATCH", &settings, None, Some(json!({"cors_origins": [APP]})))
        .await
        .assert_problem(401, "unauthenticated");
    let after = app.snapshot().await;
    let orgs = |s: &Vec<(String, i64, String)>| s.iter().find(|t| t.0 == "orgs").cloned();
    assert_eq!(orgs(&after), orgs(&before), "nothing written");
}
