//! Email flows: verification after sign-up (required before creating an organization),
//! password reset, and security notices — read from the server's outbox.

use palisade_testkit::{PASSWORD, TestApp, link_token};
use serde_json::json;

#[tokio::test]
async fn sign_up_sends_a_verification_link_that_works_once() {
    let app = TestApp::spawn().await;
    app.signup("new@example.com", "New Person").await;
    let mail = app.wait_for_mail("new@example.com", "Confirm your email address").await;
    assert!(mail.contains("Hello New Person"));
    assert!(mail.contains(&format!("{}/verify-email?token=pev_", "http://127.0.0.1:8080")), "{mail}");
    let token = link_token(&mail, "/verify-email").unwrap();
    let token_in_db: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.email_tokens WHERE row_to_json(email_tokens)::text LIKE '%' || $1 || '%'",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(token_in_db, 0, "only the hash is stored");

    let session = app.login("new@example.com").await;
    app.send("POST", "/api/v1/orgs", Some(&session), Some(json!({"name": "Too early"})))
        .await
        .assert_problem(403, "email-unverified");
    assert_eq!(app.count("orgs").await, 0);
    assert_eq!(app.count("tenants").await, 0, "the refused creation left nothing behind");

    assert_eq!(app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token}))).await.status, 204);
    app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token})))
        .await
        .assert_problem(400, "invalid-token");
    assert_eq!(app.send("POST", "/api/v1/orgs", Some(&session), Some(json!({"name": "Now"}))).await.status, 201);
    let verified: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'user.email_verified'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(verified, 1);
}

#[tokio::test]
async fn verification_links_expire_and_junk_tokens_are_refused() {
    let app = TestApp::spawn().await;
    app.signup("late@example.com", "Late").await;
    let token = link_token(&app.wait_for_mail("late@example.com", "Confirm").await, "/verify-email").unwrap();
    let before = app.snapshot().await;
    for junk in [json!({"token": "pev_nope"}), json!({"token": "x".repeat(5000)}), json!({"token": ""})] {
        app.send("POST", "/api/v1/auth/verify-email", None, Some(junk)).await.assert_problem(400, "invalid-token");
    }
    app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": 5})))
        .await
        .assert_problem(422, "validation");
    app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token, "extra": 1})))
        .await
        .assert_problem(422, "validation");
    app.clock.advance(time::Duration::hours(49));
    app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token})))
        .await
        .assert_problem(400, "invalid-token");
    assert_eq!(app.snapshot().await, before, "nothing written by refused tokens");
}

#[tokio::test]
async fn a_taken_address_gets_a_notice_instead_of_a_second_account() {
    let app = TestApp::spawn().await;
    app.user("taken@example.com").await;
    app.signup("taken@example.com", "Impostor").await;
    let notice = app.wait_for_mail("taken@example.com", "Someone tried to sign up with your address").await;
    assert!(!notice.contains("token="), "no link in the notice");
    assert_eq!(app.mails_to("taken@example.com").len(), 2, "one verification, one notice");
}

#[tokio::test]
async fn password_reset_sets_a_new_password_revokes_sessions_and_unlocks() {
    let app = TestApp::spawn().await;
    let old_session = app.user("forgetful@example.com").await;
    for _ in 0..6 {
        app.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "forgetful@example.com", "password": "wrong-password-0000"})),
        )
        .await;
    }
    app.wait_for_mail("forgetful@example.com", "Your account was locked").await;
    let unknown =
        app.send("POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "nobody@example.com"}))).await;
    let known =
        app.send("POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "forgetful@example.com"}))).await;
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    assert_eq!(known.status, 202);
    let mail = app.wait_for_mail("forgetful@example.com", "Reset your password").await;
    let token = link_token(&mail, "/reset-password").unwrap();
    assert!(token.starts_with("prt_"));

    // A weak password is refused and the link stays usable.
    app.send(
        "POST",
        "/api/v1/auth/reset-password",
        None,
        Some(json!({"token": token, "password": "passwordpassword"})),
    )
    .await
    .assert_problem(422, "validation");
    let fresh = "lantern-quarry-velvet-58";
    let done =
        app.send("POST", "/api/v1/auth/reset-password", None, Some(json!({"token": token, "password": fresh}))).await;
    assert_eq!(done.status, 204, "{}", done.text);
    app.get("/api/v1/me", Some(&old_session)).await.assert_problem(401, "unauthenticated");
    let again = app
        .send(
            "POST",
            "/api/v1/auth/reset-password",
            None,
            Some(json!({"token": token, "password": "another-fine-phrase-77"})),
        )
        .await;
    again.assert_problem(400, "invalid-token");
    let login = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "forgetful@example.com", "password": fresh})))
        .await;
    assert_eq!(login.status, 200, "new password works and the lock is gone: {}", login.text);
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": "forgetful@example.com", "password": PASSWORD})))
        .await
        .assert_problem(401, "invalid-credentials");
    app.wait_for_mail("forgetful@example.com", "Your password was changed").await;
    let actions: Vec<String> = app
        .admin()
        .await
        .query("SELECT action FROM palisade.audit_events WHERE action LIKE 'user.password%' ORDER BY occurred_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["user.password_reset_requested", "user.password_reset"]);
}

#[tokio::test]
async fn reset_links_expire_after_thirty_minutes() {
    let app = TestApp::spawn().await;
    app.user("slow@example.com").await;
    app.send("POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "slow@example.com"}))).await;
    let token =
        link_token(&app.wait_for_mail("slow@example.com", "Reset your password").await, "/reset-password").unwrap();
    app.clock.advance(time::Duration::minutes(31));
    let before = app.snapshot().await;
    app.send(
        "POST",
        "/api/v1/auth/reset-password",
        None,
        Some(json!({"token": token, "password": "lantern-quarry-velvet-58"})),
    )
    .await
    .assert_problem(400, "invalid-token");
    assert_eq!(app.snapshot().await, before);
    app.login("slow@example.com").await;
}

#[tokio::test]
async fn a_sign_in_from_a_new_device_sends_a_notice() {
    let app = TestApp::spawn().await;
    app.user("traveller@example.com").await;
    app.login("traveller@example.com").await;
    let stranger = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        .json(&json!({"email": "traveller@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 200);
    let notice = app.wait_for_mail("traveller@example.com", "New sign-in to your account").await;
    assert!(notice.contains("Firefox/128.0") && notice.contains("127.0.0.1"), "{notice}");
    let notices = app.mails_to("traveller@example.com").iter().filter(|m| m.contains("New sign-in")).count();
    assert_eq!(notices, 1, "the first sign-in and a known device send none");
}

/// Over real SMTP (a sink on loopback started by the test kit): the verification mail arrives,
/// quoted-printable and all, and its link works.
#[tokio::test]
async fn mail_goes_through_a_real_smtp_server_when_configured() {
    let sink =
        palisade_testkit::SmtpSink::start(palisade_testkit::data_dir().join(format!("smtp-{}", std::process::id())))
            .await;
    let config = palisade_server::config::Config {
        smtp_url: Some(sink.url().into()),
        mail_from: "Palisade Test <palisade@example.com>".into(),
        hash_workers: Some(2),
        rate_limits: palisade_server::config::RateLimits::off(),
        ..Default::default()
    };
    let app = TestApp::spawn_with(config).await;
    app.signup("smtp-user@example.com", "Smtp User").await;
    let raw = sink.wait_for("smtp-user@example.com").await;
    assert!(
        raw.contains("From: \"Palisade Test\" <palisade@example.com>")
            || raw.contains("From: Palisade Test <palisade@example.com>"),
        "{raw}"
    );
    assert!(raw.contains("Subject: Confirm your email address"));
    let decoded = quoted_printable::decode(
        raw.split("\n\n").skip(1).collect::<Vec<_>>().join("\n\n").as_bytes(),
        quoted_printable::ParseMode::Robust,
    )
    .unwrap();
    let token = link_token(&String::from_utf8_lossy(&decoded), "/verify-email").expect("link in the SMTP message");
    assert_eq!(app.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token}))).await.status, 204);
    assert!(app.outbox.list().unwrap().is_empty(), "nothing went to the local outbox");
}

#[tokio::test]
async fn changing_the_address_is_confirmed_from_the_new_one_and_noticed_to_the_old() {
    let app = TestApp::spawn().await;
    let token = app.user("before@example.com").await;
    app.user("occupied@example.com").await;
    app.send("POST", "/api/v1/me/email", Some(&token), Some(json!({"email": "nope"})))
        .await
        .assert_problem(422, "validation");
    app.send("POST", "/api/v1/me/email", Some(&token), Some(json!({"email": "before@example.com"})))
        .await
        .assert_problem(422, "validation");
    app.send("POST", "/api/v1/me/email", None, Some(json!({"email": "after@example.com"})))
        .await
        .assert_problem(401, "unauthenticated");

    // A taken address gets the same answer, and a notice instead of a link.
    let taken =
        app.send("POST", "/api/v1/me/email", Some(&token), Some(json!({"email": "occupied@example.com"}))).await;
    let free = app.send("POST", "/api/v1/me/email", Some(&token), Some(json!({"email": "after@example.com"}))).await;
    assert_eq!((taken.status, free.status), (202, 202));
    let notice = app.wait_for_mail("occupied@example.com", "This address already has an account").await;
    assert!(!notice.contains("token="));
    app.wait_for_mail("before@example.com", "A change of your email address was requested").await;
    let link = app.wait_for_mail("after@example.com", "Confirm your new email address").await;
    let change = link_token(&link, "/confirm-email-change").unwrap();
    assert!(change.starts_with("pce_"));
    assert_eq!(
        app.send("POST", "/api/v1/auth/confirm-email-change", None, Some(json!({"token": change}))).await.status,
        204
    );
    app.send("POST", "/api/v1/auth/confirm-email-change", None, Some(json!({"token": change})))
        .await
        .assert_problem(400, "invalid-token");
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.body["email"], "after@example.com");
    app.wait_for_mail("before@example.com", "Your email address was changed").await;
    app.login("after@example.com").await;
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": "before@example.com", "password": PASSWORD})))
        .await
        .assert_problem(401, "invalid-credentials");

    // Later, without a fresh authentication, it needs step-up.
    app.clock.advance(time::Duration::minutes(11));
    app.send("POST", "/api/v1/me/email", Some(&token), Some(json!({"email": "third@example.com"})))
        .await
        .assert_problem(403, "step-up-required");
}
