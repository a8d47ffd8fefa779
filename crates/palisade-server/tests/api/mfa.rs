//! TOTP second factor: enrolment, confirmation, sign-in with a code or a backup code, replay
//! protection, lockout — codes computed by an independent implementation (oathtool).

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::{Value, json};

/// The code oathtool computes for `secret` at the server's (injected) current time.
pub fn oathtool(app: &TestApp, secret: &str) -> String {
    use palisade_core::Clock;
    let at = app.clock.now().unix_timestamp();
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", secret, "-N", &format!("@{at}")])
        .output()
        .expect("oathtool (apt-get install oathtool)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Checks that `sealed` is an envelope (first byte 0xE1) under one of the instance's data keys
/// (its key id, bytes 1..17, names a row of `instance_data_keys`).
pub async fn assert_instance_envelope(app: &TestApp, sealed: &[u8], what: &str) {
    assert_eq!(sealed.first(), Some(&0xE1), "{what} is an envelope");
    let key_id = uuid::Uuid::from_slice(&sealed[1..17]).unwrap();
    let known: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.instance_data_keys WHERE id = $1", &[&key_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(known, 1, "{what} is sealed under an instance data key");
}

/// A user with TOTP confirmed: (token, secret, backup codes).
async fn enrolled(app: &TestApp, email: &str) -> (String, String, Vec<String>) {
    let token = app.user(email).await;
    let start = app.send("POST", "/api/v1/me/mfa/totp", Some(&token), None).await;
    assert_eq!(start.status, 201, "{}", start.text);
    let secret = start.body["secret"].as_str().unwrap().to_owned();
    let code = oathtool(app, &secret);
    let confirm = app.send("POST", "/api/v1/me/mfa/totp/confirm", Some(&token), Some(json!({"code": code}))).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let codes =
        confirm.body["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (token, secret, codes)
}

async fn password_step(app: &TestApp, email: &str) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await
}

async fn second_step(app: &TestApp, challenge: &Value, code: &str) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge_token": challenge, "code": code}))).await
}

#[tokio::test]
async fn enrolment_shows_the_seed_once_seals_it_and_confirms_with_a_real_code() {
    let app = TestApp::spawn().await;
    let token = app.user("mfa@example.com").await;
    let start = app.send("POST", "/api/v1/me/mfa/totp", Some(&token), None).await;
    assert_eq!(start.status, 201);
    let secret = start.body["secret"].as_str().unwrap().to_owned();
    assert!(
        start.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Palisade:mfa%40example.com?secret="),
        "{}",
        start.text
    );
    assert!(start.body["qr_svg"].as_str().unwrap().contains("<svg"));
    // The seed is sealed at rest: its bytes appear nowhere in the row.
    let seed = base32_decode(&secret);
    let sealed: Vec<u8> =
        app.admin().await.query_one("SELECT secret_sealed FROM palisade.totp_factors", &[]).await.unwrap().get(0);
    assert!(!sealed.windows(seed.len()).any(|w| w == seed.as_slice()));
    assert_instance_envelope(&app, &sealed, "the TOTP seed").await;

    let before = app.snapshot().await;
    for bad in [
        json!({"code": "000000"}),
        json!({"code": "12345"}),
        json!({"code": "abcdef"}),
        json!({}),
        json!({"code": "1", "x": 1}),
    ] {
        let answer = app.send("POST", "/api/v1/me/mfa/totp/confirm", Some(&token), Some(bad.clone())).await;
        answer.assert_problem(422, "validation");
    }
    assert_eq!(app.snapshot().await, before);
    let confirm = app
        .send("POST", "/api/v1/me/mfa/totp/confirm", Some(&token), Some(json!({"code": oathtool(&app, &secret)})))
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let codes = confirm.body["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 14));
    let hashes: Vec<String> = app
        .admin()
        .await
        .query("SELECT code_hash FROM palisade.backup_codes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hashes.len(), 10);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
    app.send("POST", "/api/v1/me/mfa/totp", Some(&token), None).await.assert_problem(409, "conflict");
    app.send("POST", "/api/v1/me/mfa/totp", None, None).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/me/mfa/totp/confirm", None, Some(json!({"code": "123456"})))
        .await
        .assert_problem(401, "unauthenticated");
    app.wait_for_mail("mfa@example.com", "Two-factor authentication was turned on").await;
}

#[tokio::test]
async fn sign_in_needs_the_code_and_each_code_counts_once() {
    let app = TestApp::spawn().await;
    let (_, secret, _) = enrolled(&app, "two@example.com").await;
    let login = password_step(&app, "two@example.com").await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body["mfa_required"], true);
    assert!(login.body.get("access_token").is_none(), "no session before the second factor");
    assert_eq!(login.body["methods"], json!(["totp", "backup_code"]));
    let challenge = login.body["challenge_token"].clone();
    // A challenge is no access token.
    app.get("/api/v1/me", Some(challenge.as_str().unwrap())).await.assert_problem(401, "unauthenticated");
    // The code used to confirm enrolment (same 30-second step) is refused: no replay.
    second_step(&app, &challenge, &oathtool(&app, &secret)).await.assert_problem(401, "invalid-credentials");
    app.clock.advance(time::Duration::seconds(30));
    let code = oathtool(&app, &secret);
    let done = second_step(&app, &challenge, &code).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let token = done.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
    let (_, claims) = palisade_testkit::jwt_parts(&token);
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]), "the access token says how the user signed in");
    // The challenge is single-use, and so is the code in a fresh challenge.
    second_step(&app, &challenge, &code).await.assert_problem(400, "invalid-token");
    let again = password_step(&app, "two@example.com").await.body["challenge_token"].clone();
    second_step(&app, &again, &code).await.assert_problem(401, "invalid-credentials");
    let details: Value = app
        .admin()
        .await
        .query_one(
            "SELECT details FROM palisade.audit_events WHERE action = 'user.login' ORDER BY occurred_at DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(details["second_factor"], "totp");
}

#[tokio::test]
async fn backup_codes_work_once_each() {
    let app = TestApp::spawn().await;
    let (_, _, codes) = enrolled(&app, "backup@example.com").await;
    let challenge = password_step(&app, "backup@example.com").await.body["challenge_token"].clone();
    let done = second_step(&app, &challenge, &codes[3].to_uppercase()).await;
    assert_eq!(done.status, 200, "{}", done.text);
    app.wait_for_mail("backup@example.com", "A backup code was used").await;
    let challenge = password_step(&app, "backup@example.com").await.body["challenge_token"].clone();
    second_step(&app, &challenge, &codes[3]).await.assert_problem(401, "invalid-credentials");
    assert_eq!(second_step(&app, &challenge, &codes[4]).await.status, 200);
}

#[tokio::test]
async fn wrong_codes_lock_the_account_like_wrong_passwords() {
    let app = TestApp::spawn().await;
    let (_, secret, _) = enrolled(&app, "guess@example.com").await;
    app.clock.advance(time::Duration::seconds(30));
    let challenge = password_step(&app, "guess@example.com").await.body["challenge_token"].clone();
    for _ in 0..5 {
        second_step(&app, &challenge, "000000").await.assert_problem(401, "invalid-credentials");
    }
    // One password step plus five wrong codes: six failures, the account is locked.
    let locked = password_step(&app, "guess@example.com").await;
    locked.assert_problem(401, "invalid-credentials");
    app.wait_for_mail("guess@example.com", "Your account was locked").await;
    app.clock.advance(time::Duration::minutes(15));
    let challenge = password_step(&app, "guess@example.com").await.body["challenge_token"].clone();
    assert_eq!(second_step(&app, &challenge, &oathtool(&app, &secret)).await.status, 200);
}

#[tokio::test]
async fn a_code_only_counts_for_its_own_challenge_and_junk_is_refused() {
    let app = TestApp::spawn().await;
    let (_, alice_secret, _) = enrolled(&app, "alice@example.com").await;
    enrolled(&app, "bob@example.com").await;
    app.clock.advance(time::Duration::seconds(30));
    let bob_challenge = password_step(&app, "bob@example.com").await.body["challenge_token"].clone();
    second_step(&app, &bob_challenge, &oathtool(&app, &alice_secret)).await.assert_problem(401, "invalid-credentials");
    second_step(&app, &json!("pmc_forged"), "123456").await.assert_problem(400, "invalid-token");
    second_step(&app, &json!("pss_not-a-challenge"), "123456").await.assert_problem(400, "invalid-token");
    second_step(&app, &bob_challenge, "12-34").await.assert_problem(422, "validation");
    app.send("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge_token": bob_challenge})))
        .await
        .assert_problem(422, "validation");
}

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = alphabet.iter().position(|a| *a == c.to_ascii_uppercase()).unwrap() as u64;
        bits = (bits << 5) | v;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// A seed sealed before encryption at rest (under the instance key file) still signs in.
#[tokio::test]
async fn a_seed_sealed_under_the_old_instance_key_still_works() {
    let app = TestApp::spawn().await;
    let (token, secret, _) = enrolled(&app, "legacy@example.com").await;
    let user = palisade_testkit::jwt_parts(&token).1["sub"].as_str().unwrap().to_owned();
    let instance = palisade_crypto::InstanceKey::load_or_create(&app.instance_key_file).unwrap();
    let legacy = instance.seal(&base32_decode(&secret), format!("totp|{user}").as_bytes());
    assert_eq!(legacy[0], 1, "the old format");
    let admin = app.admin().await;
    assert_eq!(admin.execute("UPDATE palisade.totp_factors SET secret_sealed = $1", &[&legacy]).await.unwrap(), 1);
    app.clock.advance(time::Duration::seconds(30));
    let login = password_step(&app, "legacy@example.com").await;
    let done = second_step(&app, &login.body["challenge_token"], &oathtool(&app, &secret)).await;
    assert_eq!(done.status, 200, "{}", done.text);
}
