//! Step-up for sensitive account changes, and organizations that require a second factor.

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::json;

fn oathtool(app: &TestApp, secret: &str) -> String {
    use palisade_core::Clock;
    let at = app.clock.now().unix_timestamp();
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", secret, "-N", &format!("@{at}")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Enrols TOTP for a signed-in user; returns the secret.
async fn enrol(app: &TestApp, token: &str) -> String {
    let secret =
        app.send("POST", "/api/v1/me/mfa/totp", Some(token), None).await.body["secret"].as_str().unwrap().to_owned();
    let confirm = app
        .send("POST", "/api/v1/me/mfa/totp/confirm", Some(token), Some(json!({"code": oathtool(app, &secret)})))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    secret
}

#[tokio::test]
async fn disabling_mfa_needs_a_recent_authentication() {
    let app = TestApp::spawn().await;
    let token = app.user("careful@example.com").await;
    let secret = enrol(&app, &token).await;
    app.clock.advance(time::Duration::minutes(11));
    let before = app.snapshot().await;
    app.send("DELETE", "/api/v1/me/mfa/totp", Some(&token), None).await.assert_problem(403, "step-up-required");
    assert_eq!(app.snapshot().await, before, "nothing removed");
    // Password alone is not enough for an account with a second factor.
    app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD})))
        .await
        .assert_problem(422, "validation");
    app.send(
        "POST",
        "/api/v1/auth/step-up",
        Some(&token),
        Some(json!({"password": "wrong-password-000", "code": oathtool(&app, &secret)})),
    )
    .await
    .assert_problem(401, "invalid-credentials");
    let step_up = app
        .send(
            "POST",
            "/api/v1/auth/step-up",
            Some(&token),
            Some(json!({"password": PASSWORD, "code": oathtool(&app, &secret)})),
        )
        .await;
    assert_eq!(step_up.status, 204, "{}", step_up.text);
    assert_eq!(app.send("DELETE", "/api/v1/me/mfa/totp", Some(&token), None).await.status, 204);
    assert_eq!(app.count("totp_factors").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);
    app.wait_for_mail("careful@example.com", "Two-factor authentication was turned off").await;
    let login = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "careful@example.com", "password": PASSWORD})))
        .await;
    assert!(login.body["access_token"].is_string(), "no second factor any more: {}", login.text);
    app.send("DELETE", "/api/v1/me/mfa/totp", Some(&token), None).await.assert_problem(404, "not-found");
    app.send("DELETE", "/api/v1/me/mfa/totp", None, None).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/auth/step-up", None, Some(json!({"password": PASSWORD})))
        .await
        .assert_problem(401, "unauthenticated");
}

/// Found by the schemathesis reliability suite: a `webauthn.credential` that is not an object
/// (as the document says it must be) was accepted on step-up of an account without keys.
#[tokio::test]
async fn a_webauthn_credential_must_be_an_object() {
    let app = TestApp::spawn().await;
    let token = app.user("strict@example.com").await;
    for credential in [json!("text"), json!(7), json!(null), json!([])] {
        let body = json!({"password": PASSWORD, "webauthn": {"challenge_token": "x", "credential": credential}});
        app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(body)).await.assert_problem(422, "validation");
        app.send(
            "POST",
            "/api/v1/auth/webauthn",
            None,
            Some(json!({"challenge_token": "x", "credential": credential})),
        )
        .await
        .assert_problem(422, "validation");
    }
}

#[tokio::test]
async fn wrong_step_up_passwords_count_towards_the_lockout() {
    let app = TestApp::spawn().await;
    let token = app.user("stolen@example.com").await;
    for _ in 0..6 {
        app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": "guess-guess-guess-1"})))
            .await
            .assert_problem(401, "invalid-credentials");
    }
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": "stolen@example.com", "password": PASSWORD})))
        .await
        .assert_problem(401, "invalid-credentials");
    app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD})))
        .await
        .assert_problem(401, "invalid-credentials");
}

#[tokio::test]
async fn changing_the_password_needs_step_up_and_signs_out_other_sessions() {
    let app = TestApp::spawn().await;
    let token = app.user("mover@example.com").await;
    let other = app.login("mover@example.com").await;
    app.send("POST", "/api/v1/me/password", Some(&token), Some(json!({"password": "passwordpassword"})))
        .await
        .assert_problem(422, "validation");
    app.clock.advance(time::Duration::minutes(11));
    app.send("POST", "/api/v1/me/password", Some(&token), Some(json!({"password": "granite-falcon-ribbon-41"})))
        .await
        .assert_problem(403, "step-up-required");
    assert_eq!(
        app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD}))).await.status,
        204
    );
    assert_eq!(
        app.send("POST", "/api/v1/me/password", Some(&token), Some(json!({"password": "granite-falcon-ribbon-41"})))
            .await
            .status,
        204
    );
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200, "this session stays");
    app.get("/api/v1/me", Some(&other)).await.assert_problem(401, "unauthenticated");
    let login = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "mover@example.com", "password": "granite-falcon-ribbon-41"})),
        )
        .await;
    assert_eq!(login.status, 200);
    app.wait_for_mail("mover@example.com", "Your password was changed").await;
}

async fn add_member(app: &TestApp, email: &str, role: &str) {
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
             SELECT o.tenant_id, u.id, $2, now() FROM palisade.orgs o, palisade.users u WHERE u.email = $1",
            &[&email, &role],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_org_mfa_policy_holds_members_it_covers_until_they_enrol() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("boss@example.com", "Strict Co").await;
    let path = format!("/api/v1/orgs/{org}");
    // Turning the policy on without a second factor of one's own is refused.
    app.send("PATCH", &path, Some(&owner), Some(json!({"mfa_policy": "admins"})))
        .await
        .assert_problem(403, "mfa-enrollment-required");
    app.send("PATCH", &path, Some(&owner), Some(json!({"mfa_policy": "sometimes"})))
        .await
        .assert_problem(422, "validation");
    enrol(&app, &owner).await;
    let set = app.send("PATCH", &path, Some(&owner), Some(json!({"mfa_policy": "admins"}))).await;
    assert_eq!((set.status, set.body["mfa_policy"].as_str()), (200, Some("admins")), "{}", set.text);

    let admin = app.user("deputy@example.com").await;
    add_member(&app, "deputy@example.com", "admin").await;
    let member = app.user("worker@example.com").await;
    add_member(&app, "worker@example.com", "member").await;
    app.get(&path, Some(&admin)).await.assert_problem(403, "mfa-enrollment-required");
    app.get(&format!("{path}/members"), Some(&admin)).await.assert_problem(403, "mfa-enrollment-required");
    assert_eq!(app.get(&path, Some(&member)).await.status, 200, "members are not covered by 'admins'");
    assert_eq!(app.get("/api/v1/me", Some(&admin)).await.status, 200, "the account itself stays usable to enrol");

    assert_eq!(app.send("PATCH", &path, Some(&owner), Some(json!({"mfa_policy": "all"}))).await.status, 200);
    app.get(&path, Some(&member)).await.assert_problem(403, "mfa-enrollment-required");
    enrol(&app, &admin).await;
    assert_eq!(app.get(&path, Some(&admin)).await.status, 200, "enrolled: access restored");
    let list = app.get("/api/v1/orgs", Some(&owner)).await;
    assert_eq!(list.body["items"][0]["mfa_policy"], "all");
    let changes: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'settings.changed' AND details ? 'mfa_policy'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(changes, 2);
}
