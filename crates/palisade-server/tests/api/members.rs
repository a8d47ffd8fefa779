//! Invitations, role changes and removal, with their rules and their audit events.

use palisade_testkit::{TestApp, link_token};
use serde_json::json;

async fn invite(app: &TestApp, token: &str, org: &str, email: &str, role: &str) -> palisade_testkit::Answer {
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/invitations"),
        Some(token),
        Some(json!({"email": email, "role": role})),
    )
    .await
}

async fn invitation_token(app: &TestApp, email: &str) -> String {
    link_token(&app.wait_for_mail(email, "You are invited").await, "/accept-invite").expect("invitation link")
}

async fn accept(app: &TestApp, token: &str, invitation: &str) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/invitations/accept", Some(token), Some(json!({"token": invitation}))).await
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.get("/api/v1/me", Some(token)).await.body["id"].as_str().unwrap().to_owned()
}

async fn actions(app: &TestApp) -> Vec<(String, String)> {
    app.admin()
        .await
        .query(
            "SELECT action, outcome FROM palisade.audit_events WHERE tenant_id IS NOT NULL ORDER BY occurred_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn an_invited_address_joins_once_with_the_invited_role() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let sent = invite(&app, &owner, &org, "Sam@Example.com", "contractor").await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert!(sent.body["id"].as_str().unwrap().starts_with("inv_"));
    assert_eq!(
        (sent.body["email"].as_str(), sent.body["role"].as_str()),
        (Some("sam@example.com"), Some("contractor"))
    );
    let link = invitation_token(&app, "sam@example.com").await;
    assert!(link.starts_with("pin_"));
    let pending = app.get(&format!("/api/v1/orgs/{org}/invitations"), Some(&owner)).await;
    assert_eq!(pending.body["items"].as_array().unwrap().len(), 1);

    // A different account cannot use the link, nor can an unverified one.
    let other = app.user("other@example.com").await;
    accept(&app, &other, &link).await.assert_problem(400, "invalid-token");
    app.signup("sam@example.com", "Sam").await;
    let unverified = app.login("sam@example.com").await;
    accept(&app, &unverified, &link).await.assert_problem(403, "email-unverified");
    let verify =
        link_token(&app.wait_for_mail("sam@example.com", "Confirm your email address").await, "/verify-email").unwrap();
    app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": verify}))).await;

    let joined = accept(&app, &unverified, &link).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(
        (joined.body["org_id"].as_str(), joined.body["role"].as_str()),
        (Some(org.as_str()), Some("contractor"))
    );
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&unverified)).await.body["role"], "contractor");
    accept(&app, &unverified, &link).await.assert_problem(400, "invalid-token");
    assert!(
        app.get(&format!("/api/v1/orgs/{org}/invitations"), Some(&owner)).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        actions(&app).await.iter().filter(|(a, _)| a == "user.invited" || a == "user.invitation_accepted").count(),
        2
    );
    accept(&app, &other, "garbage").await.assert_problem(400, "invalid-token");
    app.send("POST", "/api/v1/invitations/accept", None, Some(json!({"token": link})))
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn revoked_and_expired_invitations_do_not_open() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let sam = app.user("sam@example.com").await;
    let first = invite(&app, &owner, &org, "sam@example.com", "member").await;
    let first_link = invitation_token(&app, "sam@example.com").await;
    let id = first.body["id"].as_str().unwrap();
    assert_eq!(
        app.send("DELETE", &format!("/api/v1/orgs/{org}/invitations/{id}"), Some(&owner), None).await.status,
        204
    );
    accept(&app, &sam, &first_link).await.assert_problem(400, "invalid-token");
    app.send("DELETE", &format!("/api/v1/orgs/{org}/invitations/{id}"), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");

    invite(&app, &owner, &org, "sam@example.com", "member").await;
    let second_link =
        link_token(&app.wait_for_nth_mail("sam@example.com", "You are invited", 2).await, "/accept-invite").unwrap();
    assert_ne!(first_link, second_link);
    app.clock.advance(time::Duration::days(7) + time::Duration::minutes(1));
    let sam = app.login("sam@example.com").await;
    accept(&app, &sam, &second_link).await.assert_problem(400, "invalid-token");
    assert!(actions(&app).await.contains(&("invitation.revoked".into(), "success".into())));
}

#[tokio::test]
async fn invitations_respect_roles_tenants_and_input() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let admin = app.user("admin@example.com").await;
    invite(&app, &owner, &org, "admin@example.com", "admin").await;
    accept(&app, &admin, &invitation_token(&app, "admin@example.com").await).await;
    let viewer = app.user("viewer@example.com").await;
    invite(&app, &owner, &org, "viewer@example.com", "viewer").await;
    accept(&app, &viewer, &invitation_token(&app, "viewer@example.com").await).await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Elsewhere").await;
    let before = app.snapshot().await;

    for (body, pointer) in [
        (json!({"email": "x", "role": "member"}), "/email"),
        (json!({"email": "a@example.com", "role": "emperor"}), "/role"),
    ] {
        let answer = app.send("POST", &format!("/api/v1/orgs/{org}/invitations"), Some(&owner), Some(body)).await;
        answer.assert_problem(422, "validation");
        assert_eq!(answer.body["errors"][0]["pointer"], pointer);
    }
    app.send("POST", &format!("/api/v1/orgs/{org}/invitations"), Some(&owner), Some(json!({"email": "a@example.com"})))
        .await
        .assert_problem(422, "validation");
    invite(&app, &stranger, &org, "a@example.com", "member").await.assert_problem(404, "not-found");
    app.get(&format!("/api/v1/orgs/{org}/invitations"), Some(&stranger)).await.assert_problem(404, "not-found");
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/invitations"),
        None,
        Some(json!({"email": "a@example.com", "role": "member"})),
    )
    .await
    .assert_problem(401, "unauthenticated");
    assert_eq!(app.snapshot().await, before, "nothing written");

    invite(&app, &viewer, &org, "a@example.com", "member").await.assert_problem(403, "forbidden");
    invite(&app, &admin, &org, "a@example.com", "owner").await.assert_problem(403, "forbidden");
    assert_eq!(invite(&app, &admin, &org, "a@example.com", "admin").await.status, 201, "an admin may grant admin");
    let denied = actions(&app).await.iter().filter(|(a, o)| a == "user.invited" && o == "denied").count();
    assert_eq!(denied, 2);
}

#[tokio::test]
async fn role_changes_never_go_above_your_own_and_an_owner_always_remains() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let owner_id = user_id(&app, &owner).await;
    let admin = app.user("admin@example.com").await;
    invite(&app, &owner, &org, "admin@example.com", "admin").await;
    accept(&app, &admin, &invitation_token(&app, "admin@example.com").await).await;
    let member = app.user("member@example.com").await;
    invite(&app, &owner, &org, "member@example.com", "member").await;
    accept(&app, &member, &invitation_token(&app, "member@example.com").await).await;
    let member_id = user_id(&app, &member).await;
    let path = |id: &str| format!("/api/v1/orgs/{org}/members/{id}");

    assert_eq!(app.send("PATCH", &path(&member_id), Some(&admin), Some(json!({"role": "manager"}))).await.status, 204);
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.body["role"], "manager");
    app.send("PATCH", &path(&member_id), Some(&admin), Some(json!({"role": "owner"})))
        .await
        .assert_problem(403, "forbidden");
    app.send("PATCH", &path(&owner_id), Some(&admin), Some(json!({"role": "viewer"})))
        .await
        .assert_problem(403, "forbidden");
    app.send("PATCH", &path(&owner_id), Some(&member), Some(json!({"role": "viewer"})))
        .await
        .assert_problem(403, "forbidden");
    // The only owner cannot step down; with a second owner it can.
    app.send("PATCH", &path(&owner_id), Some(&owner), Some(json!({"role": "admin"})))
        .await
        .assert_problem(409, "conflict");
    assert_eq!(app.send("PATCH", &path(&member_id), Some(&owner), Some(json!({"role": "owner"}))).await.status, 204);
    assert_eq!(app.send("PATCH", &path(&owner_id), Some(&owner), Some(json!({"role": "admin"}))).await.status, 204);
    app.send("PATCH", &path(&member_id), Some(&owner), Some(json!({"role": "boss"})))
        .await
        .assert_problem(422, "validation");
    app.send("PATCH", &path("usr_01h455vb4pex5vsknk084sn02q"), Some(&member), Some(json!({"role": "viewer"})))
        .await
        .assert_problem(404, "not-found");
    app.send("PATCH", &path("garbage"), Some(&member), Some(json!({"role": "viewer"})))
        .await
        .assert_problem(404, "not-found");
    let changed = actions(&app).await.iter().filter(|(a, o)| a == "user.role_changed" && o == "success").count();
    assert_eq!(changed, 3);
}

#[tokio::test]
async fn removal_ends_access_at_once_but_never_removes_the_last_owner() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let owner_id = user_id(&app, &owner).await;
    let member = app.user("member@example.com").await;
    invite(&app, &owner, &org, "member@example.com", "member").await;
    accept(&app, &member, &invitation_token(&app, "member@example.com").await).await;
    let member_id = user_id(&app, &member).await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Elsewhere").await;

    app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{member_id}"), Some(&stranger), None)
        .await
        .assert_problem(404, "not-found");
    app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{owner_id}"), Some(&member), None)
        .await
        .assert_problem(403, "forbidden");
    app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{owner_id}"), Some(&owner), None)
        .await
        .assert_problem(409, "conflict");
    assert_eq!(
        app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{member_id}"), Some(&owner), None).await.status,
        204
    );
    app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.assert_problem(404, "not-found");
    app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{member_id}"), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");
    app.send("DELETE", &format!("/api/v1/orgs/{org}/members/{member_id}"), None, None)
        .await
        .assert_problem(401, "unauthenticated");
    assert!(actions(&app).await.contains(&("user.removed".into(), "success".into())));
}
