//! Sign-up, sign-in, sign-out, the caller's account, sessions and cookies.

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::json;

async fn audit_actions(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    app.admin()
        .await
        // The instance's own key events (the first signing key, made at start) are not the user's.
        .query(
            "SELECT action, outcome, actor_kind FROM palisade.audit_events \
             WHERE action NOT LIKE 'signing_key.%' ORDER BY occurred_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn signup_login_me_logout_round_trip_is_audited() {
    let app = TestApp::spawn().await;
    let signup = app.signup("ada@example.com", "Ada Lovelace").await;
    assert_eq!(signup.status, 202, "{}", signup.text);
    let login = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "ADA@example.com", "password": PASSWORD})))
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 15 * 60, "access tokens live 15 minutes");
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let refresh = login.body["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("prf_") && refresh.len() == 47, "{refresh}");

    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "ada@example.com");
    assert_eq!(me.body["name"], "Ada Lovelace");
    assert_eq!(me.body["is_instance_admin"], false);
    assert!(me.body["id"].as_str().unwrap().starts_with("usr_"));

    let logout = app.send("POST", "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(logout.status, 204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthenticated");

    let events = audit_actions(&app).await;
    let names: Vec<&str> = events.iter().map(|(a, ..)| a.as_str()).collect();
    assert_eq!(names, ["user.signup", "user.login", "user.logout"]);
    assert!(events.iter().all(|(_, outcome, actor)| outcome == "success" && actor.as_deref() == Some("user")));
    // Actor and target are ids; request context is recorded; no email anywhere in the log.
    let admin = app.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE actor_id IS NULL OR ip IS NULL OR request_id IS NULL OR user_agent IS NULL),
                    count(*) FILTER (WHERE row_to_json(e)::text ILIKE '%ada@%') FROM palisade.audit_events e
              WHERE action NOT LIKE 'signing_key.%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "every event has actor, ip, user agent and request id");
    assert_eq!(row.get::<_, i64>(1), 0, "no email in the audit log");
}

#[tokio::test]
async fn passwords_are_argon2id_and_tokens_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    app.user("grace@example.com").await;
    // The cookie token is the session's only stored secret; the access token is signed, not stored.
    let login = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "grace@example.com", "password": PASSWORD})))
        .await;
    let token = cookie_value(&login, "palisade_session");
    let admin = app.admin().await;
    let hash: String = admin.query_one("SELECT password_hash FROM palisade.users", &[]).await.unwrap().get(0);
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    let last: Vec<u8> = admin
        .query_one("SELECT token_hash FROM palisade.sessions ORDER BY created_at DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, palisade_auth::hash_token(&token).0.to_vec());
    let leaks: i64 = admin
        .query_one(
            "SELECT count(*) FROM palisade.sessions s WHERE row_to_json(s)::text LIKE '%' || $1 || '%'",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0);
}

#[tokio::test]
async fn signup_rejects_bad_input_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let before = app.snapshot().await;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD, "name": "A"}), "/email"),
        (json!({"email": "a@example.com", "password": "short", "name": "A"}), "/password"),
        (json!({"email": "a@example.com", "password": "passwordpassword", "name": "A"}), "/password"),
        (
            json!({"email": "ada.lovelace@example.com", "password": "ada.lovelace@example.com", "name": "A"}),
            "/password",
        ),
        (json!({"email": "a@example.com", "password": "x".repeat(257), "name": "A"}), "/password"),
        (json!({"email": "a@example.com", "password": PASSWORD, "name": ""}), "/name"),
        (json!({"email": "a@example.com", "password": PASSWORD, "name": "bad\u{7}name"}), "/name"),
    ];
    for (body, pointer) in cases {
        let answer = app.send("POST", "/api/v1/auth/signup", None, Some(body.clone())).await;
        answer.assert_problem(422, "validation");
        let pointers: Vec<&str> =
            answer.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert!(pointers.contains(&pointer), "{body} should flag {pointer}: {}", answer.text);
    }
    // The weak-password answer says why.
    let weak = app
        .send(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": "a@example.com", "password": "passwordpassword", "name": "A"})),
        )
        .await;
    assert!(weak.body["detail"].as_str().unwrap().contains("too easy to guess"), "{}", weak.text);
    // Several bad fields are reported together.
    let many =
        app.send("POST", "/api/v1/auth/signup", None, Some(json!({"email": "x", "password": "y", "name": ""}))).await;
    assert_eq!(many.body["errors"].as_array().unwrap().len(), 3, "{}", many.text);
    app.send(
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": "a@example.com", "password": PASSWORD, "name": "A", "is_instance_admin": true})),
    )
    .await
    .assert_problem(422, "validation");
    app.send("POST", "/api/v1/auth/signup", None, Some(json!({"email": "a@example.com"})))
        .await
        .assert_problem(422, "validation");
    app.send_raw("POST", "/api/v1/auth/signup", None, "application/json", b"{\"email\":".to_vec())
        .await
        .assert_problem(400, "invalid-json");
    app.send_raw("POST", "/api/v1/auth/signup", None, "text/plain", b"{}".to_vec())
        .await
        .assert_problem(415, "unsupported-media-type");
    assert_eq!(app.snapshot().await, before, "nothing was written");
}

#[tokio::test]
async fn duplicate_signup_answers_like_a_new_one_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let first = app.signup("lin@example.com", "Lin").await;
    let users_before = app.count("users").await;
    let second = app
        .send(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": "Lin@Example.com", "password": "another-strong-phrase-71", "name": "Mallory"})),
        )
        .await;
    assert_eq!((first.status, &first.body), (second.status, &second.body));
    assert_eq!(app.count("users").await, users_before);
    // The original password still works; the second one does not.
    app.login("lin@example.com").await;
    app.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "lin@example.com", "password": "another-strong-phrase-71"})),
    )
    .await
    .assert_problem(401, "invalid-credentials");
    let name: String = app.admin().await.query_one("SELECT name FROM palisade.users", &[]).await.unwrap().get(0);
    assert_eq!(name, "Lin");
    let outcomes = audit_actions(&app).await;
    assert!(outcomes.contains(&("user.signup".into(), "failure".into(), None)), "{outcomes:?}");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_one_answer() {
    let app = TestApp::spawn().await;
    app.user("kay@example.com").await;
    let wrong = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "kay@example.com", "password": "wrong-password-123456"})),
        )
        .await;
    let unknown = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "nobody@example.com", "password": PASSWORD})))
        .await;
    let malformed = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "not an email", "password": PASSWORD})))
        .await;
    for answer in [&wrong, &unknown, &malformed] {
        answer.assert_problem(401, "invalid-credentials");
        assert!(answer.header("set-cookie").is_none());
    }
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, malformed.body);
    let failed = audit_actions(&app).await.iter().filter(|(a, ..)| a == "user.login_failed").count();
    assert_eq!(failed, 3);
    assert_eq!(app.count("sessions").await, 1, "only the successful login made a session");
}

#[tokio::test]
async fn login_sets_an_http_only_lax_cookie_and_csrf_guards_cookie_writes() {
    let app = TestApp::spawn().await;
    app.user("cookie@example.com").await;
    let login = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "cookie@example.com", "password": PASSWORD})))
        .await;
    let cookies: Vec<&str> = login.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session = cookies.iter().find(|c| c.starts_with("palisade_session=")).expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "no Secure flag without TLS: {session}");
    let csrf = cookies.iter().find(|c| c.starts_with("palisade_csrf=")).expect("csrf cookie");
    assert!(!csrf.contains("HttpOnly"));
    let token = login.body["access_token"].as_str().unwrap();
    let cookie_token = cookie_value(&login, "palisade_session");
    assert!(cookie_token.starts_with("pss_") && cookie_token.len() == 47, "an opaque cookie token");
    let csrf_value = csrf.trim_start_matches("palisade_csrf=").split(';').next().unwrap();
    let cookie_header = format!("palisade_session={cookie_token}; palisade_csrf={csrf_value}");

    let me = app.http.get(app.url("/api/v1/me")).header("cookie", &cookie_header).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let without = app.http.post(app.url("/api/v1/auth/logout")).header("cookie", &cookie_header).send().await.unwrap();
    assert_eq!(without.status(), 403);
    let wrong = app
        .http
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(app.get("/api/v1/me", Some(token)).await.status, 200, "refused requests changed nothing");
    let with = app
        .http
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", csrf_value)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 204);
    assert_eq!(app.get("/api/v1/me", Some(token)).await.status, 401);
}

#[tokio::test]
async fn missing_malformed_and_unknown_credentials_are_401() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/me", None).await.assert_problem(401, "unauthenticated");
    app.get("/api/v1/me", Some("pss_not-a-real-token")).await.assert_problem(401, "unauthenticated");
    let basic = app.http.get(app.url("/api/v1/me")).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
    app.send("POST", "/api/v1/auth/logout", None, None).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn browser_sessions_end_after_inactivity_and_at_their_absolute_lifetime() {
    let app = TestApp::spawn().await;
    app.user("idle@example.com").await;
    let me = |cookie: String| {
        let app = &app;
        async move { app.send_with("GET", "/api/v1/me", None, &[("cookie", &cookie)], None).await }
    };
    let cookie = app.login_cookie("idle@example.com").await;
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(me(cookie.clone()).await.status, 200, "activity renews the idle window");
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(me(cookie.clone()).await.status, 200);
    app.clock.advance(time::Duration::minutes(31));
    me(cookie).await.assert_problem(401, "unauthenticated");

    let busy = app.login_cookie("idle@example.com").await;
    for _ in 0..24 {
        app.clock.advance(time::Duration::minutes(29));
        assert_eq!(me(busy.clone()).await.status, 200);
    }
    // 25 × 29 min > 12 h: the absolute lifetime ends even an active browser session.
    app.clock.advance(time::Duration::minutes(29));
    me(busy).await.assert_problem(401, "unauthenticated");
}

/// The value of a cookie an answer sets.
fn cookie_value(answer: &palisade_testkit::Answer, name: &str) -> String {
    let prefix = format!("{name}=");
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&prefix).map(|rest| rest.split(';').next().unwrap_or("").to_owned()))
        .expect("cookie set")
}
