//! Access tokens (EdDSA JWTs), refresh-token rotation with reuse detection, the JWKS, and the
//! signing keys' rotation and revocation — including the forged tokens an attacker would try.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core::Clock;
use palisade_testkit::{PASSWORD, TestApp, jwt_parts};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::periodic_queries::one_pass;

async fn login(app: &TestApp, email: &str) -> Value {
    let answer =
        app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body
}

async fn refresh(app: &TestApp, token: &Value) -> palisade_testkit::Answer {
    app.send("POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": token}))).await
}

fn access(body: &Value) -> String {
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// Checks a JWT's signature against a JWKS with an independent Ed25519 implementation.
fn verifies_with(jwks: &Value, token: &str) -> bool {
    let (header, _) = jwt_parts(token);
    let Some(key) = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]) else {
        return false;
    };
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let public: [u8; 32] = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify_strict(signed.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}

/// HMAC-SHA256 (RFC 2104), only to forge the classic "HS256 signed with the public key" token.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::digest([pad(0x36), message.to_vec()].concat());
    Sha256::digest([pad(0x5c), inner.to_vec()].concat()).to_vec()
}

#[tokio::test]
async fn access_tokens_are_ed25519_jwts_that_the_published_keys_verify() {
    let app = TestApp::spawn().await;
    app.user("jwt@example.com").await;
    let body = login(&app, "jwt@example.com").await;
    let token = access(&body);
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(claims["sub"], me.body["id"]);
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    assert_eq!(claims["aud"], "http://127.0.0.1:8080/api");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["auth_time"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap());
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    let sessions = app.get("/api/v1/me/sessions", Some(&token)).await;
    let current = sessions.body["items"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(claims["sid"], current["id"], "sid names the session, which the database checks");

    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks.body["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks.body["keys"][0]["use"], "sig");
    assert!(verifies_with(&jwks.body, &token));
    // Two sign-ins: different tokens, different ids.
    let other = access(&login(&app, "jwt@example.com").await);
    assert_ne!(jwt_parts(&other).1["jti"], claims["jti"]);
    assert_ne!(jwt_parts(&other).1["sid"], claims["sid"]);
}

#[tokio::test]
async fn forged_expired_and_other_kinds_of_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.user("victim@example.com").await;
    let body = login(&app, "victim@example.com").await;
    let token = access(&body);
    let (header, claims) = jwt_parts(&token);
    let (head, payload, _) = {
        let mut parts = token.split('.');
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signer = app.app.tokens.signer().expect("signing key");
    let sign = |header: Value, claims: &Value| {
        let header: jsonwebtoken::Header = serde_json::from_value(header).unwrap();
        signer.sign_with_header(&header, claims)
    };
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = json!("usr_01h455vb4pex5vsknk084sn02q");
    let public = URL_SAFE_NO_PAD
        .decode(app.get("/.well-known/jwks.json", None).await.body["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let hs_head = b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}));
    let hs_signature = URL_SAFE_NO_PAD.encode(hmac_sha256(&public, format!("{hs_head}.{payload}").as_bytes()));
    let foreign = {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let message = format!("{head}.{payload}");
        let signature = ed25519_dalek::Signer::sign(&key, message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    };
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("https://other.example/api");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://other.example");
    let cases: Vec<(&str, String)> = vec![
        ("tampered claims", format!("{head}.{}.{}", b64(&forged_claims), token.rsplit('.').next().unwrap())),
        ("alg none", format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})))),
        ("HS256 keyed with the public key", format!("{hs_head}.{payload}.{hs_signature}")),
        ("another Ed25519 key under the real kid", foreign),
        ("unknown kid", sign(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed25519-0000000000000000"}), &claims)),
        ("typ JWT (not an access token)", sign(json!({"alg": "EdDSA", "typ": "JWT", "kid": header["kid"]}), &claims)),
        ("no typ", sign(json!({"alg": "EdDSA", "kid": header["kid"]}), &claims)),
        ("wrong audience", sign(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": header["kid"]}), &wrong_aud)),
        ("wrong issuer", sign(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": header["kid"]}), &wrong_iss)),
        ("refresh token", body["refresh_token"].as_str().unwrap().to_owned()),
        ("garbage", "a.b.c".to_owned()),
        ("oversized", format!("{}.x.y", "a".repeat(5000))),
    ];
    let before = app.snapshot().await;
    for (what, forged) in &cases {
        let answer = app.get("/api/v1/me", Some(forged)).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.text);
        answer.assert_problem(401, "unauthenticated");
    }
    assert_eq!(app.snapshot().await, before, "refused tokens wrote nothing");
    // The real token still works; after 15 minutes it has expired and says how to go on.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
    app.clock.advance(time::Duration::minutes(15));
    let expired = app.get("/api/v1/me", Some(&token)).await;
    expired.assert_problem(401, "unauthenticated");
    assert!(expired.body["detail"].as_str().unwrap().contains("/api/v1/auth/refresh"), "{}", expired.text);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_ends_the_whole_session() {
    let app = TestApp::spawn().await;
    app.user("rot@example.com").await;
    let first = login(&app, "rot@example.com").await;
    app.clock.advance(time::Duration::minutes(10));
    let second = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["token_type"], "Bearer");
    assert_eq!(second.body["expires_in"], 900);
    assert_ne!(second.body["refresh_token"], first["refresh_token"]);
    let (_, first_claims) = jwt_parts(&access(&first));
    let (_, claims) = jwt_parts(&access(&second.body));
    assert_eq!(claims["sid"], first_claims["sid"], "the same session");
    assert_eq!(claims["auth_time"], first_claims["auth_time"], "no new authentication happened");
    assert!(claims["exp"].as_i64() > first_claims["exp"].as_i64());
    assert!(second.header("set-cookie").is_none(), "refresh is for API clients: no cookies");
    assert_eq!(app.get("/api/v1/me", Some(&access(&second.body))).await.status, 200);
    let third = refresh(&app, &second.body["refresh_token"]).await;
    assert_eq!(third.status, 200);

    // The first refresh token, presented again: someone holds a copy.
    let events_before = app.count("audit_events").await;
    refresh(&app, &first["refresh_token"]).await.assert_problem(401, "unauthenticated");
    for token in [access(&first), access(&second.body), access(&third.body)] {
        app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthenticated");
    }
    refresh(&app, &third.body["refresh_token"]).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.count("audit_events").await, events_before + 1, "one event, written with the revocation");
    let row = app
        .admin()
        .await
        .query_one(
            "SELECT e.actor_id, e.target_kind, e.target_id, u.id, s.revoked_at IS NOT NULL FROM palisade.audit_events e
               JOIN palisade.users u ON u.email = 'rot@example.com'
               JOIN palisade.sessions s ON s.id = e.target_id
              WHERE e.action = 'session.refresh_reused'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(0), Some(row.get::<_, uuid::Uuid>(3)), "the account's owner");
    assert_eq!(row.get::<_, String>(1), "session");
    assert!(row.get::<_, bool>(4), "the session is revoked");
    let mail = app.wait_for_mail("rot@example.com", "refresh token was used twice").await;
    assert!(mail.contains("Sign in again"), "{mail}");
    // A second replay of the dead family changes nothing more.
    refresh(&app, &first["refresh_token"]).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.count("audit_events").await, events_before + 1);
    // Other sign-ins of the user are untouched.
    let fresh = login(&app, "rot@example.com").await;
    assert_eq!(refresh(&app, &fresh["refresh_token"]).await.status, 200);
}

#[tokio::test]
async fn a_rotation_reaches_its_token_and_session_through_their_keys() {
    // Before 0034 the rotation joined token and session in one statement, and with a small
    // sessions table its plan hashed the whole table on every rotation. Now both the use and
    // the reuse path are lookups by primary key, whatever the sizes and statistics say (here:
    // a handful of rows, where the planner would otherwise read the tables whole).
    let app = TestApp::spawn().await;
    app.user("keys@example.com").await;
    let first = login(&app, "keys@example.com").await;
    for _ in 0..3 {
        login(&app, "keys@example.com").await;
    }
    let presented = Sha256::digest(first["refresh_token"].as_str().unwrap().as_bytes()).to_vec();
    let successor = Sha256::digest(b"the successor").to_vec();
    let now = app.clock.now();
    let admin = app.admin().await;
    // A small instance, as the planner sees it: there, the join's plan hashed every session.
    admin.batch_execute("ANALYZE palisade.sessions, palisade.refresh_tokens").await.unwrap();
    let rotate = "SELECT outcome FROM palisade.rotate_refresh($1, $2, $3, gen_random_uuid(), NULL, NULL, NULL)";
    for expected in ["rotated", "reused"] {
        let (rows, reads) =
            one_pass(&admin, rotate, &[&presented, &successor, &now], &["refresh_tokens", "sessions"]).await;
        assert_eq!(rows.len(), 1, "one answer row");
        assert_eq!(rows[0].get::<_, String>(0), expected);
        for (table, seq_scans, _) in reads {
            assert_eq!(seq_scans, 0, "{expected}: no sequential scan of {table}");
        }
    }
    // The reuse ended the session, as through the API.
    refresh(&app, &first["refresh_token"]).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn refresh_refuses_bad_input_unknown_tokens_and_dead_sessions() {
    let app = TestApp::spawn().await;
    app.user("bad@example.com").await;
    let body = login(&app, "bad@example.com").await;
    let before = app.snapshot().await;
    for bad in [json!({}), json!({"refresh_token": 5}), json!({"refresh_token": "x", "extra": 1})] {
        app.send("POST", "/api/v1/auth/refresh", None, Some(bad)).await.assert_problem(422, "validation");
    }
    let raw = app.http.post(app.url("/api/v1/auth/refresh")).body("{").header("content-type", "application/json");
    assert_eq!(raw.send().await.unwrap().status(), 400);
    let text = app.http.post(app.url("/api/v1/auth/refresh")).body("refresh_token=x");
    assert_eq!(text.send().await.unwrap().status(), 415);
    for unknown in [
        json!("prf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        json!("pss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        json!(access(&body)),
        json!(""),
        json!("prf_".to_owned() + &"A".repeat(500)),
    ] {
        refresh(&app, &unknown).await.assert_problem(401, "unauthenticated");
    }
    assert_eq!(app.snapshot().await, before, "nothing written");

    // Idle longer than the inactivity timeout (30 minutes): the family is over.
    app.clock.advance(time::Duration::minutes(31));
    refresh(&app, &body["refresh_token"]).await.assert_problem(401, "unauthenticated");
    // Signed out: its refresh token is over too.
    let body = login(&app, "bad@example.com").await;
    assert_eq!(app.send("POST", "/api/v1/auth/logout", Some(&access(&body)), None).await.status, 204);
    refresh(&app, &body["refresh_token"]).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_refresh_family_ends_at_its_absolute_lifetime_even_when_used() {
    let config = palisade_server::config::Config {
        hash_workers: Some(2),
        rate_limits: palisade_server::config::RateLimits::off(),
        refresh_lifetime_days: 1,
        ..Default::default()
    };
    let app = TestApp::spawn_with(config).await;
    app.user("long@example.com").await;
    let mut body = login(&app, "long@example.com").await;
    // Every 14 minutes for 23 h 48 min: each refresh works and keeps the session active.
    for _ in 0..102 {
        app.clock.advance(time::Duration::minutes(14));
        let next = refresh(&app, &body["refresh_token"]).await;
        assert_eq!(next.status, 200, "{}", next.text);
        body = next.body;
    }
    app.clock.advance(time::Duration::minutes(14));
    refresh(&app, &body["refresh_token"]).await.assert_problem(401, "unauthenticated");
    app.get("/api/v1/me", Some(&access(&body))).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn revoking_a_session_stops_its_access_tokens_on_the_next_request() {
    let app = TestApp::spawn().await;
    app.user("revoke@example.com").await;
    let laptop = access(&login(&app, "revoke@example.com").await);
    let phone = access(&login(&app, "revoke@example.com").await);
    // Both verified once (so both sit in the node's cache of verified tokens).
    assert_eq!(app.get("/api/v1/me", Some(&laptop)).await.status, 200);
    assert_eq!(app.get("/api/v1/me", Some(&phone)).await.status, 200);
    let sid = jwt_parts(&phone).1["sid"].as_str().unwrap().to_owned();
    let revoke = app.send("DELETE", &format!("/api/v1/me/sessions/{sid}"), Some(&laptop), None).await;
    assert_eq!(revoke.status, 204, "{}", revoke.text);
    app.get("/api/v1/me", Some(&phone)).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.get("/api/v1/me", Some(&laptop)).await.status, 200);
}

#[tokio::test]
async fn signing_keys_rotate_on_demand_and_on_schedule_and_revocation_is_immediate() {
    let app = TestApp::spawn().await;
    app.user("keys@example.com").await;
    let old = access(&login(&app, "keys@example.com").await);
    let old_kid = jwt_parts(&old).0["kid"].clone();
    let new_kid = app.app.rotate_signing_key().await.unwrap();
    let new = access(&login(&app, "keys@example.com").await);
    assert_eq!(jwt_parts(&new).0["kid"], json!(new_kid), "new tokens are signed with the new key");
    assert_eq!(app.get("/api/v1/me", Some(&old)).await.status, 200, "tokens of the retired key still work");
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert_eq!(kids, [&json!(new_kid), &old_kid], "both published, newest first");
    assert!(verifies_with(&jwks, &old) && verifies_with(&jwks, &new));

    // Once every token of the retired key has expired, it is no longer published.
    app.clock.advance(time::Duration::minutes(17));
    app.app.reload_token_keys().await.unwrap();
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], json!(new_kid));

    // Emergency revocation: the key's tokens stop at once, cached or not, and a new key signs.
    let victim = access(&login(&app, "keys@example.com").await);
    assert_eq!(app.get("/api/v1/me", Some(&victim)).await.status, 200);
    app.app.revoke_signing_key(&new_kid).await.unwrap();
    app.get("/api/v1/me", Some(&victim)).await.assert_problem(401, "unauthenticated");
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k["kid"] != json!(new_kid)));
    let after = access(&login(&app, "keys@example.com").await);
    assert_ne!(jwt_parts(&after).0["kid"], json!(new_kid));
    assert_eq!(app.get("/api/v1/me", Some(&after)).await.status, 200);
    assert!(matches!(app.app.revoke_signing_key(&new_kid).await, Err(palisade_app::AppError::NotFound)));
    assert!(matches!(app.app.revoke_signing_key("ed25519-unknown").await, Err(palisade_app::AppError::NotFound)));

    // The schedule: a key older than the rotation period (30 days) is replaced on reload.
    let current = jwt_parts(&after).0["kid"].clone();
    app.clock.advance(time::Duration::days(31));
    app.app.reload_token_keys().await.unwrap();
    let scheduled = access(&login(&app, "keys@example.com").await);
    assert_ne!(jwt_parts(&scheduled).0["kid"], current);
    let actions: Vec<String> = app
        .admin()
        .await
        .query(
            "SELECT action || ':' || (details->>'reason')::text FROM palisade.audit_events
              WHERE action LIKE 'signing_key.%' AND details ? 'reason' ORDER BY occurred_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "signing_key.rotated:due",
            "signing_key.rotated:operator",
            "signing_key.rotated:revocation",
            "signing_key.rotated:due"
        ],
        "first key, operator rotation, replacement after revocation, schedule"
    );
    let revoked: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'signing_key.revoked'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revoked, 1);
    // Every private key (first, rotated, replacement, scheduled) is sealed under the instance's
    // data key.
    let sealed: Vec<Vec<u8>> = app
        .admin()
        .await
        .query("SELECT sealed_private FROM palisade.signing_keys WHERE purpose = 'token'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sealed.len(), 4);
    for private in &sealed {
        crate::mfa::assert_instance_envelope(&app, private, "a token-signing private key").await;
    }
}
