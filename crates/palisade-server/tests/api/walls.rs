//! What SQL injected into a request's connection cannot do (migrations 0042–0045): take over an
//! account (read or replace password hashes, create accounts, mint the email tokens and sign-in
//! challenges that would make it any account), change the keys, lock or unlock accounts, or
//! stall the audit sequencer. Each attack is one a review carried out against the earlier
//! grants; the account takeovers ended signed in as the victim.

use palisade_store::catalog;
use palisade_testkit::TestApp;
use serde_json::json;

fn sql_state(err: &tokio_postgres::Error) -> String {
    err.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

async fn hash_of(admin: &tokio_postgres::Client, email: &str) -> String {
    admin.query_one("SELECT password_hash FROM palisade.users WHERE email = $1", &[&email]).await.unwrap().get(0)
}

#[tokio::test]
async fn injected_sql_cannot_take_over_an_account() {
    let app = TestApp::spawn().await;
    let (_, victim_org) = app.owner_of("victim@example.com", "Victim Corp").await;
    let (mallory, _) = app.owner_of("mallory@example.com", "Mallory Ltd").await;
    let admin = app.admin().await;
    let victim_hash = hash_of(&admin, "victim@example.com").await;
    let runtime = app.runtime().await;
    assert_eq!(catalog::wall_problems(&runtime).await.unwrap(), Vec::<String>::new());

    // Each statement the review ran, refused for want of the privilege.
    for sql in [
        "SELECT password_hash FROM palisade.users",
        "UPDATE palisade.users v SET password_hash = 'x' WHERE v.email = 'victim@example.com'",
        "INSERT INTO palisade.users (id, email, name, password_hash, is_instance_admin, created_at, updated_at)
           VALUES (gen_random_uuid(), 'root@evil.test', 'Root', 'x', true, now(), now())",
        "INSERT INTO palisade.users (id, email, name, password_hash, created_at, updated_at)
           VALUES (gen_random_uuid(), 'plain@evil.test', 'Plain', 'x', now(), now())",
        "UPDATE palisade.users SET is_instance_admin = true",
        "INSERT INTO palisade.email_tokens (token_hash, user_id, purpose, email, created_at, expires_at)
           SELECT sha256('v'), id, 'reset_password', email, now(), now() + interval '1 hour'
             FROM palisade.users WHERE email = 'victim@example.com'",
        "INSERT INTO palisade.mfa_challenges (token_hash, user_id, created_at, expires_at)
           SELECT sha256('c'), id, now(), now() + interval '5 minutes'
             FROM palisade.users WHERE email = 'victim@example.com'",
        // A passwordless sign-in hands anyone a challenge for an address with a passkey, and
        // entering it made its account the caller before any factor was checked.
        "SELECT * FROM palisade.enter_webauthn_challenge(sha256('handed-out'), now(), 6, 900)",
        "SELECT * FROM palisade.enter_mfa_challenge(sha256('handed-out'), now(), 6, 900)",
        "SELECT palisade.complete_mfa(sha256('handed-out'), now(), 1, NULL)",
        "SELECT palisade.complete_webauthn(sha256('handed-out'), now(), '\\x00', '\\x00'::bytea)",
    ] {
        let err = runtime.batch_execute(sql).await.unwrap_err();
        assert_eq!(sql_state(&err), "42501", "{sql}: {err}");
    }
    // No forged token exists, so none can be consumed: the reset never names the victim.
    let err = runtime.query_one("SELECT palisade.enter_reset(sha256('v'), now())", &[]).await.unwrap_err();
    assert!(["PA401", "PA410"].contains(&sql_state(&err).as_str()), "{err}");

    // Hash kinds are counted without a prefix of the caller's (which read hashes a character at
    // a time).
    let err = runtime.query_one("SELECT * FROM palisade.password_hash_census('$argon2id$')", &[]).await.unwrap_err();
    assert_eq!(sql_state(&err), "42883", "{err}");

    // The one way left to set a password: for the verified caller, no one else.
    let err = runtime.query_one("SELECT palisade.set_own_password('x', now())", &[]).await.unwrap_err();
    assert_eq!(sql_state(&err), "PA401", "no caller: {err}");
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime
        .query_one("SELECT palisade.enter_session($1, now())", &[&app.session_proof(&mallory).to_db()])
        .await
        .unwrap();
    runtime.query_one("SELECT palisade.set_own_password('$argon2id$mallory-chose-this', now())", &[]).await.unwrap();
    runtime.batch_execute("COMMIT").await.unwrap();
    assert_eq!(hash_of(&admin, "mallory@example.com").await, "$argon2id$mallory-chose-this");
    assert_eq!(hash_of(&admin, "victim@example.com").await, victim_hash, "the victim's hash is untouched");

    // Nothing was created, and the victim's organization still has its one owner.
    let accounts: i64 = admin.query_one("SELECT count(*) FROM palisade.users", &[]).await.unwrap().get(0);
    assert_eq!(accounts, 2);
    let tokens: i64 = admin
        .query_one("SELECT count(*) FROM palisade.email_tokens WHERE purpose = 'reset_password'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tokens, 0);
    let members = app.get(&format!("/api/v1/orgs/{victim_org}/members"), Some(&mallory)).await;
    assert_eq!(members.status, 404, "{:?}", members.body);

    // The flows that need those privileges run over the sign-in login and still work.
    let asked =
        app.send("POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "victim@example.com"}))).await;
    assert_eq!(asked.status, 202);
    let tokens: i64 = admin
        .query_one("SELECT count(*) FROM palisade.email_tokens WHERE purpose = 'reset_password'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tokens, 1, "the genuine reset link was minted");
}

/// The keys behind the wall (0043): SQL injected into a request's connection can neither publish
/// an access-token key of its own (which every node would trust), revoke the real ones, stand a
/// second audit key beside the instance's, nor overwrite the wrapped instance data keys.
#[tokio::test]
async fn injected_sql_cannot_change_the_keys() {
    let app = TestApp::spawn().await;
    let token = app.user("keys-victim@example.com").await;
    let admin = app.admin().await;
    let keys_before: Vec<(String, Option<time::OffsetDateTime>)> = admin
        .query("SELECT key_id, revoked_at FROM palisade.signing_keys ORDER BY key_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let instance_keys: Vec<Vec<u8>> = admin
        .query("SELECT wrapped FROM palisade.instance_data_keys ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys_before.len(), 1, "the access-token key (no checkpoint signed yet): {keys_before:?}");
    assert!(!instance_keys.is_empty());
    let runtime = app.runtime().await;
    assert_eq!(catalog::wall_problems(&runtime).await.unwrap(), Vec::<String>::new());

    let public = vec![7u8; 32];
    for sql in [
        "INSERT INTO palisade.signing_keys (key_id, purpose, algorithm, public_key, sealed_private, created_at)
           VALUES ('evil-1', 'token', 'Ed25519', '\\x7777777777777777777777777777777777777777777777777777777777777777', '\\x00', now())",
        "UPDATE palisade.signing_keys SET revoked_at = now()",
        "SELECT palisade.rotate_token_key('evil-2', '\\x7777777777777777777777777777777777777777777777777777777777777777', '\\x00', now(), NULL)",
        "UPDATE palisade.instance_data_keys SET wrapped = '\\x00'",
    ] {
        let err = runtime.batch_execute(sql).await.unwrap_err();
        assert_eq!(sql_state(&err), "42501", "{sql}: {err}");
    }
    // Nor the audit key: before the first checkpoint the instance has none, and one planted then
    // would have been the key every checkpoint named. Only the sign-in login adds it.
    let add = "SELECT palisade.add_audit_key($1, $2, '\\x00', now())";
    let err = runtime.query_one(add, &[&"evil-audit", &public]).await.unwrap_err();
    assert_eq!(sql_state(&err), "42501", "{err}");
    let keys_after: Vec<(String, Option<time::OffsetDateTime>)> = admin
        .query("SELECT key_id, revoked_at FROM palisade.signing_keys ORDER BY key_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(keys_after, keys_before);
    let instance_after: Vec<Vec<u8>> = admin
        .query("SELECT wrapped FROM palisade.instance_data_keys ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(instance_after, instance_keys);
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200, "the real key still signs");
}

/// The lockout behind the wall (0044): SQL injected into a request's connection can neither lock
/// an address for good, nor clear an account's run of failures between guesses, nor prune.
#[tokio::test]
async fn injected_sql_cannot_lock_or_unlock_accounts() {
    let app = TestApp::spawn().await;
    let victim = app.user("lock-victim@example.com").await;
    let victim_id: uuid::Uuid = app.admin().await.query_one("SELECT id FROM palisade.users", &[]).await.unwrap().get(0);
    // Five wrong passwords: one short of the lock.
    for _ in 0..5 {
        let wrong = json!({"email": "lock-victim@example.com", "password": "not-the-password-9"});
        assert_eq!(app.send("POST", "/api/v1/auth/login", None, Some(wrong)).await.status, 401);
    }
    let runtime = app.runtime().await;
    for sql in [
        "SELECT palisade.count_login_attempt('lock-victim@example.com', 'infinity', 1, 1)",
        "SELECT palisade.prune_login_attempts('infinity', 0)",
    ] {
        let err = runtime.batch_execute(sql).await.unwrap_err();
        assert_eq!(sql_state(&err), "42501", "{sql}: {err}");
    }
    let err = runtime.query_one("SELECT palisade.clear_login_attempts($1)", &[&victim_id]).await.unwrap_err();
    assert_eq!(sql_state(&err), "PA401", "{err}");
    let failed: i32 =
        app.admin().await.query_one("SELECT failed FROM palisade.login_attempts", &[]).await.unwrap().get(0);
    assert_eq!(failed, 5, "the run of failures stands");
    // The account itself may clear its own run (as a step-up does); the sixth guess would lock.
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime
        .query_one("SELECT palisade.enter_session($1, now())", &[&app.session_proof(&victim).to_db()])
        .await
        .unwrap();
    runtime.query_one("SELECT palisade.clear_login_attempts($1)", &[&victim_id]).await.unwrap();
    runtime.batch_execute("ROLLBACK").await.unwrap();
    let ok = json!({"email": "lock-victim@example.com", "password": palisade_testkit::PASSWORD});
    assert_eq!(app.send("POST", "/api/v1/auth/login", None, Some(ok)).await.status, 200, "not locked for good");
}

/// The sequencer behind the wall (0045): an advisory lock held by a runtime connection, which
/// used to stop every sequencer pass for as long as it was held, no longer stalls it; and the
/// sequencer's own row cannot be locked by a runtime connection.
#[tokio::test]
async fn injected_sql_cannot_stall_the_audit_sequencer() {
    let app = TestApp::spawn().await;
    let runtime = app.runtime().await;
    runtime.query_one("SELECT pg_advisory_lock(727274002)", &[]).await.unwrap();
    let err = runtime.batch_execute("BEGIN; SELECT 1 FROM palisade.audit_sealer FOR UPDATE").await.unwrap_err();
    assert_eq!(sql_state(&err), "42501", "{err}");
    runtime.batch_execute("ROLLBACK").await.unwrap();
    app.user("sealed-anyway@example.com").await;
    let mut sealed = 0;
    for _ in 0..5 {
        sealed += app.app.seal_audit().await.unwrap();
    }
    assert!(sealed > 0, "the sign-up's events were chained while the advisory lock was held");
    let unchained: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events a
              WHERE NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = a.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unchained, 0);
}

/// Checkpoints name a real audit key (0046): a runtime connection cannot record one (or a
/// truncation) under a key id the instance never had.
#[tokio::test]
async fn injected_sql_cannot_checkpoint_under_a_made_up_key() {
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("cp@example.com", "Checkpointed").await;
    app.app.seal_audit().await.unwrap();
    let org = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    let admin = app.admin().await;
    let head = admin
        .query_one("SELECT seq, hash FROM palisade.audit_chain WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", &[&org])
        .await
        .unwrap();
    let (seq, hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    let runtime = app.runtime().await;
    let err = runtime
        .query_one("SELECT palisade.record_checkpoint($1, $2, $3, now(), 'made-up-key', '\\x00')", &[&org, &seq, &hash])
        .await
        .unwrap_err();
    assert_eq!(sql_state(&err), "PA500", "{err}");
    // (A truncation is refused earlier still here: nothing is past retention.)
    let err = runtime
        .query_one("SELECT palisade.purge_audit($1, $2, $3, now(), 'made-up-key', '\\x00')", &[&org, &seq, &hash])
        .await
        .unwrap_err();
    assert!(["PA403", "PA500"].contains(&sql_state(&err).as_str()), "{err}");
    let stored: i64 = admin.query_one("SELECT count(*) FROM palisade.audit_checkpoints", &[]).await.unwrap().get(0);
    assert_eq!(stored, 0);
    // The sequencer's own checkpoint, under the instance's key, is taken once due (the chain's
    // hour moved back rather than the clock on).
    admin
        .execute(
            "UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '61 minutes' WHERE tenant_id = $1",
            &[&org],
        )
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    let named: String = admin.query_one("SELECT key_id FROM palisade.audit_checkpoints", &[]).await.unwrap().get(0);
    let audit_key: String = admin
        .query_one("SELECT key_id FROM palisade.signing_keys WHERE purpose = 'audit' AND retired_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, audit_key);
}

/// A new password needs proof of the account (0042): a session, or a reset link consumed in the
/// same transaction. An email-verification link also makes its account the caller, and must
/// not be enough.
#[tokio::test]
async fn a_password_is_set_only_with_a_session_or_a_reset_link() {
    let app = TestApp::spawn().await;
    app.user("proof@example.com").await;
    let admin = app.admin().await;
    let before = hash_of(&admin, "proof@example.com").await;
    // Links as the sign-in login mints them (hashes of tokens the test knows).
    for (token, purpose) in [("verify-link", "verify_email"), ("reset-link", "reset_password")] {
        admin
            .execute(
                "INSERT INTO palisade.email_tokens (token_hash, user_id, purpose, email, created_at, expires_at)
                 SELECT sha256(convert_to($1, 'UTF8')), id, $2, email, now(), now() + interval '30 minutes'
                   FROM palisade.users WHERE email = 'proof@example.com'",
                &[&token, &purpose],
            )
            .await
            .unwrap();
    }
    let runtime = app.runtime().await;
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime
        .query_one("SELECT palisade.verify_email(sha256(convert_to('verify-link', 'UTF8')), now())", &[])
        .await
        .unwrap();
    let err = runtime.query_one("SELECT palisade.set_own_password('x', now())", &[]).await.unwrap_err();
    assert_eq!(sql_state(&err), "PA401", "a verification link is no proof for a password: {err}");
    runtime.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(hash_of(&admin, "proof@example.com").await, before);

    runtime.batch_execute("BEGIN").await.unwrap();
    runtime
        .query_one("SELECT palisade.enter_reset(sha256(convert_to('reset-link', 'UTF8')), now())", &[])
        .await
        .unwrap();
    runtime.query_one("SELECT palisade.set_own_password('$argon2id$reset', now())", &[]).await.unwrap();
    runtime.batch_execute("COMMIT").await.unwrap();
    assert_eq!(hash_of(&admin, "proof@example.com").await, "$argon2id$reset");
}
