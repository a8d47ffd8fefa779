//! The write-only secrets store: values go in encrypted under the organization's own data key
//! (envelope encryption through the key provider) and never come back out through any answer,
//! list, audit event or table; ciphertexts are bound to their row and tenant.

use palisade_testkit::TestApp;
use serde_json::json;

use crate::collections::member_with_role;

const CANARY: &str = "sk_live_CANARY_4f9b2c7e1d";

fn secrets_path(org: &str) -> String {
    format!("/api/v1/orgs/{org}/secrets")
}

/// Every row of every palisade table as text, for "the value is nowhere" assertions.
async fn whole_database(app: &TestApp) -> String {
    let admin = app.admin().await;
    let tables = admin
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'palisade' AND c.relkind = 'r'",
            &[],
        )
        .await
        .unwrap();
    let mut all = String::new();
    for table in tables {
        let name: String = table.get(0);
        let sql = format!("SELECT coalesce(string_agg(t::text, '|'), '') FROM palisade.\"{name}\" t");
        let text: String = admin.query_one(&sql, &[]).await.unwrap().get(0);
        all.push_str(&text);
    }
    all
}

#[tokio::test]
async fn a_secret_is_written_listed_replaced_and_deleted_but_its_value_never_comes_back() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let made =
        app.send("POST", &secrets_path(&org), Some(&owner), Some(json!({"name": "stripe", "value": CANARY}))).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert!(made.body["id"].as_str().unwrap().starts_with("sec_"));
    assert_eq!(made.body["name"], "stripe");
    assert_eq!(made.body["version"], 1);
    assert!(made.body["key_id"].as_str().unwrap().starts_with("dek_"), "{}", made.text);
    assert!(made.body.get("value").is_none() && !made.text.contains(CANARY));

    let listed = app.get(&secrets_path(&org), Some(&owner)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(!listed.text.contains(CANARY));

    // Taken name: a conflict, and the stored value is untouched.
    let again =
        app.send("POST", &secrets_path(&org), Some(&owner), Some(json!({"name": "stripe", "value": "x"}))).await;
    again.assert_problem(409, "conflict");

    let replaced = app
        .send(
            "PUT",
            &format!("{}/stripe", secrets_path(&org)),
            Some(&owner),
            Some(json!({"value": "rotated-value-77"})),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["version"], 2);
    assert_eq!(replaced.body["id"], made.body["id"]);

    // At rest: an envelope (version byte 0xE1) under the organization's data key, which is
    // itself stored only wrapped; the value appears in no table at all.
    let admin = app.admin().await;
    let sealed: Vec<u8> = admin.query_one("SELECT sealed FROM palisade.secrets", &[]).await.unwrap().get(0);
    assert_eq!(sealed[0], 0xE1);
    let key_rows: i64 = admin.query_one("SELECT count(*) FROM palisade.org_data_keys", &[]).await.unwrap().get(0);
    assert_eq!(key_rows, 1);
    let database = whole_database(&app).await;
    assert!(!database.contains(CANARY) && !database.contains("rotated-value-77"), "a value is stored in the clear");
    // The server's own consumers (connectors) can read it back.
    let proof = app.session_proof(&owner);
    let org_id = org.parse().unwrap();
    let value = app.app.reveal_secret_for_use(&proof, org_id, "stripe").await.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&value), "rotated-value-77");

    let deleted = app.send("DELETE", &format!("{}/stripe", secrets_path(&org)), Some(&owner), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(app.count("secrets").await, 0);
    app.send("DELETE", &format!("{}/stripe", secrets_path(&org)), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");

    // The audit trail names each change and the secret, never the value.
    let events = app
        .get(&format!("/api/v1/orgs/{org}/audit-events?target={}", made.body["id"].as_str().unwrap()), Some(&owner))
        .await;
    let actions: Vec<&str> =
        events.body["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["secret.deleted", "secret.replaced", "secret.created"], "{}", events.text);
    assert!(!events.text.contains(CANARY) && !events.text.contains("rotated-value-77"));
    let export = app.get(&format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl"), Some(&owner)).await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert!(!export.text.contains(CANARY));
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let before = app.snapshot().await;
    let path = secrets_path(&org);
    for (body, slug, status) in [
        (json!({"name": "1bad", "value": "v"}), "validation", 422),
        (json!({"name": "has space", "value": "v"}), "validation", 422),
        (json!({"name": "ok", "value": ""}), "validation", 422),
        (json!({"name": "ok", "value": "v".repeat(16 * 1024 + 1)}), "validation", 422),
        (json!({"name": "ok", "value": "v", "extra": 1}), "validation", 422),
        (json!({"name": "ok"}), "validation", 422),
        (json!({"name": "ok", "value": 12345}), "validation", 422),
    ] {
        let answer = app.send("POST", &path, Some(&owner), Some(body.clone())).await;
        answer.assert_problem(status, slug);
        assert!(
            !answer.text.contains("12345") && !answer.text.contains(&"v".repeat(64)),
            "a problem quotes the value: {}",
            answer.text
        );
    }
    let raw = app.send_raw("POST", &path, Some(&owner), "application/json", b"{\"name\": ".to_vec()).await;
    raw.assert_problem(400, "invalid-json");
    let replace = app.send("PUT", &format!("{path}/ok"), Some(&owner), Some(json!({"value": ""}))).await;
    replace.assert_problem(422, "validation");
    assert_eq!(app.snapshot().await, before, "nothing written, not even an organization data key");
}

#[tokio::test]
async fn without_credentials_or_the_permission_nothing_is_read_or_written() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let made =
        app.send("POST", &secrets_path(&org), Some(&owner), Some(json!({"name": "smtp", "value": CANARY}))).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let (manager, _) = member_with_role(&app, &org, "manager@example.com", "manager").await;
    let before = app.snapshot().await;
    let path = secrets_path(&org);
    for token in [None, Some("not-a-token"), Some(manager.as_str())] {
        let expected = if token == Some(manager.as_str()) { (403, "forbidden") } else { (401, "unauthenticated") };
        app.send("POST", &path, token, Some(json!({"name": "new", "value": "v"})))
            .await
            .assert_problem(expected.0, expected.1);
        app.get(&path, token).await.assert_problem(expected.0, expected.1);
        app.send("PUT", &format!("{path}/smtp"), token, Some(json!({"value": "v"})))
            .await
            .assert_problem(expected.0, expected.1);
        app.send("DELETE", &format!("{path}/smtp"), token, None).await.assert_problem(expected.0, expected.1);
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn another_organization_sees_nothing_and_a_ciphertext_moved_between_rows_or_tenants_does_not_open() {
    let app = TestApp::spawn().await;
    let (owner_a, org_a) = app.owner_of("a@example.com", "A").await;
    let (owner_b, org_b) = app.owner_of("b@example.com", "B").await;
    for (name, value) in [("one", "first-value-aaa"), ("two", "second-value-bbb")] {
        let made =
            app.send("POST", &secrets_path(&org_a), Some(&owner_a), Some(json!({"name": name, "value": value}))).await;
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let made =
        app.send("POST", &secrets_path(&org_b), Some(&owner_b), Some(json!({"name": "one", "value": "b-value"}))).await;
    assert_eq!(made.status, 201, "{}", made.text);

    // B's owner naming A's organization: 404 on every route, nothing leaks or changes.
    let before = app.snapshot().await;
    let path_a = secrets_path(&org_a);
    app.get(&path_a, Some(&owner_b)).await.assert_problem(404, "not-found");
    app.send("POST", &path_a, Some(&owner_b), Some(json!({"name": "x", "value": "v"})))
        .await
        .assert_problem(404, "not-found");
    app.send("PUT", &format!("{path_a}/one"), Some(&owner_b), Some(json!({"value": "v"})))
        .await
        .assert_problem(404, "not-found");
    app.send("DELETE", &format!("{path_a}/one"), Some(&owner_b), None).await.assert_problem(404, "not-found");
    // B's own routes never list A's secret "two".
    let listed = app.get(&secrets_path(&org_b), Some(&owner_b)).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1, "{}", listed.text);
    app.send("DELETE", &format!("{}/two", secrets_path(&org_b)), Some(&owner_b), None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(app.snapshot().await, before);

    // Each organization has its own data key, wrapped by its own wrapping key.
    let admin = app.admin().await;
    let wrapping: Vec<String> = admin
        .query("SELECT wrapping_key FROM palisade.org_data_keys ORDER BY wrapping_key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected = vec![format!("{org_a}.v1"), format!("{org_b}.v1")];
    expected.sort();
    assert_eq!(wrapping, expected);

    // The database refuses an envelope that names another organization's key (the sealed-key
    // guard); someone with owner rights can switch that off, as here, and the ciphertext itself
    // must still not open.
    admin.batch_execute("ALTER TABLE palisade.secrets DISABLE TRIGGER secrets_sealed_key_guard_update").await.unwrap();
    // Copy A's "one" ciphertext over A's "two" (another row) and over B's "one" (another tenant).
    admin
        .execute(
            "UPDATE palisade.secrets t SET sealed = s.sealed FROM palisade.secrets s
             WHERE s.name = 'one' AND s.tenant_id = $1 AND ((t.tenant_id = $1 AND t.name = 'two') OR t.tenant_id = $2)",
            &[
                &org_a.parse::<palisade_core::OrgId>().unwrap().as_uuid(),
                &org_b.parse::<palisade_core::OrgId>().unwrap().as_uuid(),
            ],
        )
        .await
        .unwrap();
    let proof_a = app.session_proof(&owner_a);
    let proof_b = app.session_proof(&owner_b);
    let a = org_a.parse().unwrap();
    let b = org_b.parse().unwrap();
    let one = app.app.reveal_secret_for_use(&proof_a, a, "one").await.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&one), "first-value-aaa");
    let moved_row = app.app.reveal_secret_for_use(&proof_a, a, "two").await.unwrap_err().to_string();
    assert!(moved_row.contains("cannot be decrypted"), "{moved_row}");
    let moved_tenant = app.app.reveal_secret_for_use(&proof_b, b, "one").await.unwrap_err().to_string();
    assert!(moved_tenant.contains("cannot be decrypted"), "{moved_tenant}");
}
