//! WebAuthn: security keys registered, listed and removed; used as a second factor and for a
//! passwordless sign-in — with a software authenticator (webauthn-authenticator-rs SoftPasskey)
//! doing the client's side of every ceremony.

use palisade_testkit::{PASSWORD, TestApp, jwt_parts};
use serde_json::{Value, json};
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

/// The origin the test server's WebAuthn expects (public URL on loopback → localhost).
fn origin() -> Url {
    Url::parse("http://localhost:8080").unwrap()
}

/// A software authenticator that reports user verification (a PIN it does not have).
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// Registers `key` for the user behind `token` under `name`; returns the answer.
async fn register(app: &TestApp, token: &str, key: &mut SoftPasskey, name: &str) -> palisade_testkit::Answer {
    let start = app.send("POST", "/api/v1/me/webauthn/register/start", Some(token), None).await;
    assert_eq!(start.status, 200, "{}", start.text);
    let options = serde_json::from_value(start.body["options"].clone()).unwrap();
    let credential = key.do_registration(origin(), options).expect("the authenticator registers");
    app.send(
        "POST",
        "/api/v1/me/webauthn/register/finish",
        Some(token),
        Some(json!({"name": name, "state": start.body["state"], "credential": credential})),
    )
    .await
}

/// The key's answer to a sign-in ceremony's options.
fn assert_with(key: &mut SoftPasskey, options: &Value) -> Value {
    let options = serde_json::from_value(options.clone()).unwrap();
    serde_json::to_value(key.do_authentication(origin(), options).expect("the authenticator answers")).unwrap()
}

async fn finish_login(app: &TestApp, challenge: &Value, credential: &Value) -> palisade_testkit::Answer {
    app.send(
        "POST",
        "/api/v1/auth/webauthn",
        None,
        Some(json!({"challenge_token": challenge, "credential": credential})),
    )
    .await
}

async fn password_step(app: &TestApp, email: &str) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await
}

#[tokio::test]
async fn keys_are_registered_named_listed_and_removed_with_a_recent_authentication() {
    let app = TestApp::spawn().await;
    let token = app.user("keys@example.com").await;
    let mut first = authenticator();
    let created = register(&app, &token, &mut first, "YubiKey 5").await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wac_"), "{id}");
    assert_eq!(created.body["name"], "YubiKey 5");
    // Stored only sealed, under the instance's data key.
    let stored = app
        .admin()
        .await
        .query_one("SELECT passkey IS NULL, passkey_sealed FROM palisade.webauthn_credentials", &[])
        .await
        .unwrap();
    assert!(stored.get::<_, bool>(0), "no clear passkey");
    crate::mfa::assert_instance_envelope(&app, &stored.get::<_, Vec<u8>>(1), "the credential").await;
    app.wait_for_mail("keys@example.com", "A security key was added").await;
    let mut second = authenticator();
    assert_eq!(register(&app, &token, &mut second, "Laptop").await.status, 201);
    let list = app.get("/api/v1/me/webauthn", Some(&token)).await;
    let names: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["YubiKey 5", "Laptop"]);

    // A name in use, a replayed answer, and malformed answers change nothing.
    let before = app.snapshot().await;
    let mut third = authenticator();
    register(&app, &token, &mut third, "Laptop").await.assert_problem(409, "conflict");
    assert_eq!(app.snapshot().await, before);
    // The same registration answer twice: the credential exists already.
    let start = app.send("POST", "/api/v1/me/webauthn/register/start", Some(&token), None).await;
    let mut fifth = authenticator();
    let credential =
        fifth.do_registration(origin(), serde_json::from_value(start.body["options"].clone()).unwrap()).unwrap();
    let finish = json!({"name": "Fifth", "state": start.body["state"], "credential": credential});
    let once = app.send("POST", "/api/v1/me/webauthn/register/finish", Some(&token), Some(finish.clone())).await;
    assert_eq!(once.status, 201, "{}", once.text);
    let other = app.user("other@example.com").await;
    let before = app.snapshot().await;
    let mut replayed = finish.clone();
    replayed["name"] = json!("Replayed");
    app.send("POST", "/api/v1/me/webauthn/register/finish", Some(&token), Some(replayed))
        .await
        .assert_problem(409, "conflict");
    let start = app.send("POST", "/api/v1/me/webauthn/register/start", Some(&token), None).await;
    let good_state = start.body["state"].clone();
    for (body, pointer) in [
        (json!({"name": "", "state": good_state, "credential": {}}), "/name"),
        (json!({"name": "X", "state": "not-sealed", "credential": {"id": "x"}}), "/credential"),
        (json!({"name": "X", "state": good_state, "credential": {"id": "x"}}), "/credential"),
    ] {
        let answer = app.send("POST", "/api/v1/me/webauthn/register/finish", Some(&token), Some(body)).await;
        answer.assert_problem(422, "validation");
        assert_eq!(answer.body["errors"][0]["pointer"], pointer, "{}", answer.text);
    }
    // Another user's sealed state is no state of yours.
    let mut fourth = authenticator();
    let start = app.send("POST", "/api/v1/me/webauthn/register/start", Some(&token), None).await;
    let credential =
        fourth.do_registration(origin(), serde_json::from_value(start.body["options"].clone()).unwrap()).unwrap();
    let stolen = json!({"name": "Stolen", "state": start.body["state"], "credential": credential});
    let answer = app.send("POST", "/api/v1/me/webauthn/register/finish", Some(&other), Some(stolen)).await;
    answer.assert_problem(422, "validation");
    assert_eq!(answer.body["errors"][0]["pointer"], "/state");
    app.send("POST", "/api/v1/me/webauthn/register/start", None, None).await.assert_problem(401, "unauthenticated");
    app.get("/api/v1/me/webauthn", None).await.assert_problem(401, "unauthenticated");
    let anonymous_finish = json!({"name": "X", "state": "s", "credential": {}});
    app.send("POST", "/api/v1/me/webauthn/register/finish", None, Some(anonymous_finish))
        .await
        .assert_problem(401, "unauthenticated");
    app.send("DELETE", &format!("/api/v1/me/webauthn/{id}"), None, None).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/auth/step-up/webauthn", None, None).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/auth/webauthn", None, Some(json!({"challenge_token": "pmc_x"})))
        .await
        .assert_problem(422, "validation");
    assert_eq!(app.snapshot().await, before, "refusals wrote nothing");

    // Removing a key needs a recent authentication; someone else's key is not found.
    app.clock.advance(time::Duration::minutes(11));
    let path = format!("/api/v1/me/webauthn/{id}");
    app.send("DELETE", &path, Some(&token), None).await.assert_problem(403, "step-up-required");
    let other_step_up =
        app.send("POST", "/api/v1/auth/step-up", Some(&other), Some(json!({"password": PASSWORD}))).await;
    assert_eq!(other_step_up.status, 204);
    app.send("DELETE", &path, Some(&other), None).await.assert_problem(404, "not-found");
    app.send("DELETE", "/api/v1/me/webauthn/wac_nonsense", Some(&token), None).await.assert_problem(404, "not-found");
    // An account with keys steps up with the password and a key, not the password alone.
    let password_only =
        app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD}))).await;
    password_only.assert_problem(422, "validation");
    assert_eq!(password_only.body["errors"][0]["pointer"], "/webauthn");
    let ceremony = app.send("POST", "/api/v1/auth/step-up/webauthn", Some(&token), None).await;
    assert_eq!(ceremony.status, 200, "{}", ceremony.text);
    // A step-up ceremony never signs anyone in.
    let answer = assert_with(&mut first, &ceremony.body["options"]);
    let wrong_password = json!({"password": "not-the-password-123", "webauthn": {"challenge_token": ceremony.body["challenge_token"], "credential": answer}});
    app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(wrong_password))
        .await
        .assert_problem(401, "invalid-credentials");
    let ceremony = app.send("POST", "/api/v1/auth/step-up/webauthn", Some(&token), None).await;
    let answer = assert_with(&mut first, &ceremony.body["options"]);
    finish_login(&app, &ceremony.body["challenge_token"], &answer).await.assert_problem(401, "invalid-credentials");
    let ceremony = app.send("POST", "/api/v1/auth/step-up/webauthn", Some(&token), None).await;
    let answer = assert_with(&mut first, &ceremony.body["options"]);
    let step_up = json!({"password": PASSWORD, "webauthn": {"challenge_token": ceremony.body["challenge_token"], "credential": answer}});
    let stepped = app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(step_up.clone())).await;
    assert_eq!(stepped.status, 204, "{}", stepped.text);
    app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(step_up))
        .await
        .assert_problem(401, "invalid-credentials");
    app.send("POST", "/api/v1/auth/step-up/webauthn", Some(&other), None).await.assert_problem(422, "validation");
    assert_eq!(app.send("DELETE", &path, Some(&token), None).await.status, 204);
    let list = app.get("/api/v1/me/webauthn", Some(&token)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2, "Laptop and Fifth remain");
    app.send("DELETE", &path, Some(&token), None).await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn a_security_key_is_the_second_step_of_a_sign_in_and_its_assertion_counts_once() {
    let app = TestApp::spawn().await;
    let token = app.user("two@example.com").await;
    let mut key = authenticator();
    assert_eq!(register(&app, &token, &mut key, "Key").await.status, 201);

    let login = password_step(&app, "two@example.com").await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["mfa_required"], true);
    assert_eq!(login.body["methods"], json!(["webauthn"]));
    assert!(login.body.get("access_token").is_none());
    let challenge = login.body["challenge_token"].clone();
    let assertion = assert_with(&mut key, &login.body["webauthn"]);
    let done = finish_login(&app, &challenge, &assertion).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let access = done.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_parts(&access).1["amr"], json!(["pwd", "hwk", "mfa"]));
    assert_eq!(app.get("/api/v1/me", Some(&access)).await.status, 200);
    let listed = app.get("/api/v1/me/webauthn", Some(&access)).await;
    assert!(listed.body["items"][0]["last_used_at"].is_string(), "{}", listed.text);
    // The same answer again, to the same (used) challenge or to a fresh one: refused.
    finish_login(&app, &challenge, &assertion).await.assert_problem(401, "invalid-credentials");
    let fresh = password_step(&app, "two@example.com").await;
    finish_login(&app, &fresh.body["challenge_token"], &assertion).await.assert_problem(401, "invalid-credentials");

    // Another user's key answering this user's challenge is refused (and counts as a failure).
    let other_token = app.user("eve@example.com").await;
    let mut eve_key = authenticator();
    assert_eq!(register(&app, &other_token, &mut eve_key, "Eve").await.status, 201);
    let eve_login = password_step(&app, "eve@example.com").await;
    let eve_assertion = assert_with(&mut eve_key, &eve_login.body["webauthn"]);
    let victim = password_step(&app, "two@example.com").await;
    finish_login(&app, &victim.body["challenge_token"], &eve_assertion)
        .await
        .assert_problem(401, "invalid-credentials");
    let failures: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'user.login_failed' AND details->>'reason' = 'wrong_security_key'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The used challenge names no account any more; the other two refusals are audited.
    assert_eq!(failures, 2, "each refused assertion against a live challenge is audited");
    // Junk is a validation error, not an attempt.
    finish_login(&app, &victim.body["challenge_token"], &json!({"id": 1})).await.assert_problem(422, "validation");

    // A security key satisfies an organization's MFA policy.
    let org = app.send("POST", "/api/v1/orgs", Some(&access), Some(json!({"name": "Keyed"}))).await;
    assert_eq!(org.status, 201, "{}", org.text);
    let org = org.body["id"].as_str().unwrap();
    let policy =
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&access), Some(json!({"mfa_policy": "all"}))).await;
    assert_eq!(policy.status, 200, "{}", policy.text);
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&access)).await.status, 200);
}

#[tokio::test]
async fn passwordless_sign_in_with_a_passkey_and_decoys_for_addresses_without_one() {
    let app = TestApp::spawn().await;
    let token = app.user("pk@example.com").await;
    let mut key = authenticator();
    assert_eq!(register(&app, &token, &mut key, "Phone").await.status, 201);
    let start = |email: &str| {
        let app = &app;
        let body = json!({"email": email});
        async move { app.send("POST", "/api/v1/auth/passkey/start", None, Some(body)).await }
    };
    let real = start("pk@example.com").await;
    assert_eq!(real.status, 200, "{}", real.text);
    let assertion = assert_with(&mut key, &real.body["options"]);
    let done = finish_login(&app, &real.body["challenge_token"], &assertion).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let access = done.body["access_token"].as_str().unwrap();
    assert_eq!(jwt_parts(access).1["amr"], json!(["hwk", "mfa"]));
    let event: Value = app
        .admin()
        .await
        .query_one(
            "SELECT details FROM palisade.audit_events WHERE action = 'user.login' ORDER BY occurred_at DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(event["method"], "passkey");

    // Unknown address, and an account without keys: the same shape, a stable decoy credential.
    let shape = |v: &Value| -> Vec<String> {
        fn walk(v: &Value, path: String, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, format!("{path}/{k}"), out)),
                Value::Array(items) => items.iter().for_each(|v| walk(v, format!("{path}/*"), out)),
                _ => out.push(path),
            }
        }
        let mut out = Vec::new();
        walk(v, String::new(), &mut out);
        out.sort();
        out.dedup();
        out
    };
    app.user("nokey@example.com").await;
    let real = start("pk@example.com").await;
    for email in ["nobody@example.com", "nokey@example.com"] {
        let decoy = start(email).await;
        assert_eq!(decoy.status, 200, "{}", decoy.text);
        assert_eq!(shape(&decoy.body), shape(&real.body), "{email}: {} vs {}", decoy.text, real.text);
        for field in ["rpId", "timeout", "userVerification"] {
            assert_eq!(decoy.body["options"]["publicKey"][field], real.body["options"]["publicKey"][field], "{field}");
        }
        let again = start(email).await;
        assert_eq!(
            again.body["options"]["publicKey"]["allowCredentials"],
            decoy.body["options"]["publicKey"]["allowCredentials"],
            "the decoy credential is stable"
        );
        assert_ne!(again.body["options"]["publicKey"]["challenge"], decoy.body["options"]["publicKey"]["challenge"]);
        finish_login(&app, &decoy.body["challenge_token"], &assertion).await.assert_problem(401, "invalid-credentials");
    }
    app.send("POST", "/api/v1/auth/passkey/start", None, Some(json!({"email": "not-an-email"})))
        .await
        .assert_problem(422, "validation");

    // Wrong answers count towards the lockout; once locked, even the right key is refused.
    let thief = app.user("thief@example.com").await;
    let mut thief_key = authenticator();
    assert_eq!(register(&app, &thief, &mut thief_key, "Thief").await.status, 201);
    let thief_start = start("thief@example.com").await;
    let wrong = assert_with(&mut thief_key, &thief_start.body["options"]);
    for attempt in 0..6 {
        let challenge = start("pk@example.com").await.body["challenge_token"].clone();
        finish_login(&app, &challenge, &wrong).await.assert_problem(401, "invalid-credentials");
        let _ = attempt;
    }
    let locked = start("pk@example.com").await;
    let right = assert_with(&mut key, &locked.body["options"]);
    finish_login(&app, &locked.body["challenge_token"], &right).await.assert_problem(401, "invalid-credentials");
    app.wait_for_mail("pk@example.com", "Your account was locked").await;
}

/// A credential stored in clear before credentials were sealed still works (second factor and
/// passwordless) and is stored sealed from its next use on; the server itself can no longer
/// write a clear one.
#[tokio::test]
async fn a_credential_stored_in_clear_before_sealing_still_signs_in_and_is_sealed_at_its_next_use() {
    let app = TestApp::spawn().await;
    let token = app.user("legacy@example.com").await;
    let mut key = authenticator();
    let created = register(&app, &token, &mut key, "Old key").await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = jwt_parts(&token).1["sub"].as_str().unwrap().to_owned();
    let context = format!("webauthn|{user}|{}", created.body["id"].as_str().unwrap());
    let admin = app.admin().await;
    let sealed: Vec<u8> =
        admin.query_one("SELECT passkey_sealed FROM palisade.webauthn_credentials", &[]).await.unwrap().get(0);
    // Turn the row into what it was before 0021: the clear webauthn-rs Passkey JSON.
    let clear: Value =
        serde_json::from_slice(&app.app.instance_open(&sealed, context.as_bytes()).await.unwrap()).unwrap();
    assert!(clear["cred"]["cred_id"].is_string(), "{clear}");
    admin
        .execute("UPDATE palisade.webauthn_credentials SET passkey = $1, passkey_sealed = NULL", &[&clear])
        .await
        .unwrap();

    let passwordless =
        app.send("POST", "/api/v1/auth/passkey/start", None, Some(json!({"email": "legacy@example.com"}))).await;
    assert_eq!(passwordless.status, 200, "{}", passwordless.text);
    let login = password_step(&app, "legacy@example.com").await;
    assert_eq!(login.body["methods"], json!(["webauthn"]), "{}", login.text);
    let done =
        finish_login(&app, &login.body["challenge_token"], &assert_with(&mut key, &login.body["webauthn"])).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let row = admin
        .query_one("SELECT passkey IS NULL, passkey_sealed FROM palisade.webauthn_credentials", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the clear copy is gone");
    let resealed: Vec<u8> = row.get(1);
    crate::mfa::assert_instance_envelope(&app, &resealed, "the re-stored credential").await;
    let opened = app.app.instance_open(&resealed, context.as_bytes()).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&opened).unwrap()["cred"]["cred_id"], clear["cred"]["cred_id"]);
    // Bound to its row: the same envelope under another credential's id does not open.
    let elsewhere = format!("webauthn|{user}|{}", palisade_core::CredentialId::from_uuid(uuid::Uuid::now_v7()));
    assert!(app.app.instance_open(&resealed, elsewhere.as_bytes()).await.is_err());
    let passwordless =
        app.send("POST", "/api/v1/auth/passkey/start", None, Some(json!({"email": "legacy@example.com"}))).await;
    let done = finish_login(
        &app,
        &passwordless.body["challenge_token"],
        &assert_with(&mut key, &passwordless.body["options"]),
    )
    .await;
    assert_eq!(done.status, 200, "the re-sealed credential signs in: {}", done.text);

    // The runtime role may neither insert a clear credential nor store one through the old function.
    let runtime = app.runtime().await;
    let insert = runtime
        .execute(
            "INSERT INTO palisade.webauthn_credentials (id, user_id, name, credential_id, passkey, created_at) \
             VALUES (gen_random_uuid(), gen_random_uuid(), 'x', '\\x00', '{}', now())",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(insert.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{insert}");
    let old_function: bool = runtime
        .query_one(
            "SELECT has_function_privilege('palisade.complete_webauthn(bytea, timestamptz, bytea, jsonb)', 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!old_function);
}

#[tokio::test]
async fn adding_a_key_or_an_authenticator_app_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let token = app.user("late@example.com").await;
    app.clock.advance(time::Duration::minutes(11));
    // A session cookie or token alone cannot plant a new way to sign in.
    let mut key = authenticator();
    register(&app, &token, &mut key, "Late key").await.assert_problem(403, "step-up-required");
    let start = app.send("POST", "/api/v1/me/mfa/totp", Some(&token), None).await;
    assert_eq!(start.status, 201, "{}", start.text);
    let secret = start.body["secret"].as_str().unwrap().to_owned();
    let code = crate::mfa::oathtool(&app, &secret);
    app.send("POST", "/api/v1/me/mfa/totp/confirm", Some(&token), Some(json!({"code": code})))
        .await
        .assert_problem(403, "step-up-required");
    assert_eq!(app.count("webauthn_credentials").await, 0);
    // After proving the password again, both work.
    let up = app.send("POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD}))).await;
    assert_eq!(up.status, 204, "{}", up.text);
    assert_eq!(register(&app, &token, &mut key, "Late key").await.status, 201);
    app.clock.advance(time::Duration::seconds(31));
    let code = crate::mfa::oathtool(&app, &secret);
    let confirmed = app.send("POST", "/api/v1/me/mfa/totp/confirm", Some(&token), Some(json!({"code": code}))).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
}
