//! Brute-force protection: the account lockout (counted atomically in the database) and the
//! per-IP throttle on authentication routes.

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::json;

async fn attempt(app: &TestApp, email: &str, password: &str) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": password}))).await
}

async fn events(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    app.admin()
        .await
        .query("SELECT details FROM palisade.audit_events WHERE action = $1 ORDER BY occurred_at", &[&action])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn six_failures_lock_for_fifteen_minutes_then_it_unlocks_by_itself() {
    let app = TestApp::spawn().await;
    app.user("victim@example.com").await;
    for _ in 0..6 {
        attempt(&app, "victim@example.com", "wrong-password-0000").await.assert_problem(401, "invalid-credentials");
    }
    // Locked: even the right password gets the answer an unknown account gets.
    let locked = attempt(&app, "victim@example.com", PASSWORD).await;
    let unknown = attempt(&app, "nobody@example.com", PASSWORD).await;
    locked.assert_problem(401, "invalid-credentials");
    assert_eq!(locked.body, unknown.body);
    assert_eq!(events(&app, "user.locked").await.len(), 1);
    let reasons: Vec<String> =
        events(&app, "user.login_failed").await.iter().map(|d| d["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons.iter().filter(|r| *r == "wrong_password").count(), 6);
    assert_eq!(reasons.iter().filter(|r| *r == "locked").count(), 1);
    assert_eq!(reasons.iter().filter(|r| *r == "unknown_account").count(), 1);

    app.clock.advance(time::Duration::minutes(14));
    attempt(&app, "victim@example.com", PASSWORD).await.assert_problem(401, "invalid-credentials");
    app.clock.advance(time::Duration::minutes(1));
    assert_eq!(attempt(&app, "victim@example.com", PASSWORD).await.status, 200, "self-unlocked after 15 minutes");
}

#[tokio::test]
async fn a_success_resets_the_count_of_consecutive_failures() {
    let app = TestApp::spawn().await;
    app.user("steady@example.com").await;
    for _ in 0..5 {
        attempt(&app, "steady@example.com", "wrong-password-0000").await;
    }
    app.login("steady@example.com").await;
    for _ in 0..5 {
        attempt(&app, "steady@example.com", "wrong-password-0000").await;
    }
    assert_eq!(
        attempt(&app, "steady@example.com", PASSWORD).await.status,
        200,
        "5 + 5 failures split by a success do not lock"
    );
    assert!(events(&app, "user.locked").await.is_empty());
}

#[tokio::test]
async fn two_hundred_concurrent_wrong_passwords_verify_at_most_six_times() {
    let app = TestApp::spawn().await;
    app.user("target@example.com").await;
    let before = app.hasher.real_verifications();
    let attempts = (0..200).map(|i| {
        let app = &app;
        async move { attempt(app, "target@example.com", &format!("wrong-password-{i:04}")).await.status }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let verified = app.hasher.real_verifications() - before;
    assert!(verified <= 6, "{verified} real password verifications for one account");
    assert_eq!(verified, 6, "exactly the six allowed attempts were checked");
    let failed: i32 =
        app.admin().await.query_one("SELECT failed_logins FROM palisade.users", &[]).await.unwrap().get(0);
    assert_eq!(failed, 6);
    assert_eq!(events(&app, "user.locked").await.len(), 1);
}

#[tokio::test]
async fn an_instance_admin_can_unlock_early() {
    let app = TestApp::spawn().await;
    app.user("early@example.com").await;
    for _ in 0..6 {
        attempt(&app, "early@example.com", "wrong-password-0000").await;
    }
    let admin = app.admin().await;
    let email = palisade_core::Email::parse("early@example.com").unwrap();
    palisade_store::repo::users::unlock(&admin, &email).await.unwrap();
    assert_eq!(attempt(&app, "early@example.com", PASSWORD).await.status, 200);
    assert_eq!(events(&app, "user.unlocked").await.len(), 1);
}
