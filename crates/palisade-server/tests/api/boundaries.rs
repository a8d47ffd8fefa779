//! The answers every endpoint owes at its edges, for the routes whose own tests do not already
//! walk them: no credentials (401), another organization's ids (404, nothing written), and
//! malformed input (problem+json, nothing written).

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::{Value, json};

#[tokio::test]
async fn member_routes_answer_401_without_credentials_and_404_across_tenants() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Org A").await;
    let invited = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/invitations"),
            Some(&owner),
            Some(json!({"email": "x@example.com", "role": "member"})),
        )
        .await;
    let invitation = invited.body["id"].as_str().unwrap().to_owned();
    let owner_id = app.get("/api/v1/me", Some(&owner)).await.body["id"].as_str().unwrap().to_owned();
    let (stranger, _) = app.owner_of("stranger@example.com", "Org B").await;
    let routes: [(&str, String, Option<Value>); 4] = [
        ("GET", format!("/api/v1/orgs/{org}/invitations"), None),
        ("DELETE", format!("/api/v1/orgs/{org}/invitations/{invitation}"), None),
        ("PATCH", format!("/api/v1/orgs/{org}/members/{owner_id}"), Some(json!({"role": "viewer"}))),
        ("GET", format!("/api/v1/orgs/{org}/roles"), None),
    ];
    let before = app.snapshot().await;
    for (method, path, body) in &routes {
        app.send(method, path, None, body.clone()).await.assert_problem(401, "unauthenticated");
        app.send(method, path, Some(&stranger), body.clone()).await.assert_problem(404, "not-found");
    }
    app.send("DELETE", &format!("/api/v1/orgs/{org}/invitations/garbage"), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(app.snapshot().await, before, "nothing written");
    // The invitation is still there for its own organization.
    assert_eq!(
        app.get(&format!("/api/v1/orgs/{org}/invitations"), Some(&owner)).await.body["items"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn account_routes_refuse_malformed_input_and_missing_credentials_writing_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("edge@example.com").await;
    let before = app.snapshot().await;
    let bad: [(&str, Option<&str>, Value, u16, &str); 9] = [
        ("/api/v1/invitations/accept", Some(&token), json!({}), 422, "validation"),
        ("/api/v1/invitations/accept", Some(&token), json!({"token": 1}), 422, "validation"),
        ("/api/v1/auth/forgot-password", None, json!({"email": "not-an-email"}), 422, "validation"),
        ("/api/v1/auth/forgot-password", None, json!({"email": "a@example.com", "extra": true}), 422, "validation"),
        ("/api/v1/auth/reset-password", None, json!({"token": "prt_x"}), 422, "validation"),
        (
            "/api/v1/auth/reset-password",
            None,
            json!({"token": "prt_unknown", "password": "lantern-quarry-velvet-58"}),
            400,
            "invalid-token",
        ),
        ("/api/v1/auth/step-up", Some(&token), json!({"password": PASSWORD, "remember": true}), 422, "validation"),
        ("/api/v1/auth/confirm-email-change", None, json!({"token": "pce_unknown"}), 400, "invalid-token"),
        ("/api/v1/auth/confirm-email-change", None, json!({"tokens": []}), 422, "validation"),
    ];
    for (path, caller, body, status, slug) in bad {
        app.send("POST", path, caller, Some(body)).await.assert_problem(status, slug);
    }
    app.send_raw("POST", "/api/v1/auth/step-up", Some(&token), "application/json", b"{".to_vec())
        .await
        .assert_problem(400, "invalid-json");
    app.send("POST", "/api/v1/me/password", None, Some(json!({"password": "granite-falcon-ribbon-41"})))
        .await
        .assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/me/mfa/totp/confirm", None, Some(json!({"code": "123456"})))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(app.snapshot().await, before, "nothing written");
}
