//! Organization API keys: shown once, stored as a keyed hash, scoped, bounded by the creator's
//! current role, revocable, expiring, IP-restricted, rotated with an overlap, named in the audit.

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::{member_with_role, org_with_work_orders};

async fn create_key(app: &TestApp, token: &str, org: &str, body: Value) -> palisade_testkit::Answer {
    app.send("POST", &format!("/api/v1/orgs/{org}/api-keys"), Some(token), Some(body)).await
}

fn secret(answer: &palisade_testkit::Answer) -> String {
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.body["secret"].as_str().expect("secret").to_owned()
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_keyed_hash_and_acts_as_itself_in_the_audit_log() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let made = create_key(
        &app,
        &owner,
        &org,
        json!({"name": "nightly import", "permissions": ["collections.read", "records.read_all", "records.create"]}),
    )
    .await;
    let key = secret(&made);
    let key_id = made.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pal_live_") && key_id.starts_with("key_"), "{}", made.text);
    assert!(key.starts_with(made.body["prefix"].as_str().unwrap()));
    // records.read_all brings records.read_own, which every read route checks.
    assert_eq!(
        made.body["permissions"],
        json!(["collections.read", "records.create", "records.read_all", "records.read_own"])
    );

    // The key works as a Bearer token on its organization's routes.
    let job = app.send("POST", &records, Some(&key), Some(json!({"data": {"title": "Roof", "status": "open"}}))).await;
    assert_eq!(job.status, 201, "{}", job.text);
    assert_eq!(app.get(&records, Some(&key)).await.body["items"].as_array().unwrap().len(), 1);

    // The list never shows the secret; it shows when and from where the key was last used.
    let listed = app.get(&format!("/api/v1/orgs/{org}/api-keys"), Some(&owner)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(!listed.text.contains(&key), "a list must never contain a secret");
    let row = &listed.body["items"][0];
    assert_eq!(row["id"], key_id.as_str());
    assert!(row.get("secret").is_none());
    assert!(row["last_used_at"].as_str().is_some(), "{}", listed.text);
    assert_eq!(row["last_used_ip"], "127.0.0.1");

    // At rest: neither the key nor its plain SHA-256 is stored (a keyed hash is).
    let stored: Vec<u8> =
        app.admin().await.query_one("SELECT secret_hash FROM palisade.api_keys", &[]).await.unwrap().get(0);
    assert_eq!(stored.len(), 32);
    assert_ne!(stored, palisade_auth::hash_token(&key).0.to_vec());
    let dump: String = app
        .admin()
        .await
        .query_one("SELECT string_agg(k::text, '|') FROM palisade.api_keys k", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!dump.contains(&key[9..]), "the secret is in the table");

    // The audit log names the key, not its creator, as the actor of what it did.
    let events = app.get(&format!("/api/v1/orgs/{org}/audit-events?action=record.created"), Some(&owner)).await;
    let actor = &events.body["items"][0]["actor"];
    assert_eq!(actor["kind"], "api_key", "{}", events.text);
    assert_eq!(actor["id"], key_id.as_str());
    let by_key = app.get(&format!("/api/v1/orgs/{org}/audit-events?actor={key_id}"), Some(&owner)).await;
    assert_eq!(by_key.body["items"].as_array().unwrap().len(), 1, "{}", by_key.text);
    let created = app.get(&format!("/api/v1/orgs/{org}/audit-events?action=api_key.created"), Some(&owner)).await;
    assert_eq!(created.body["items"][0]["details"]["prefix"], made.body["prefix"]);
    assert!(!created.text.contains(&key));
}

#[tokio::test]
async fn a_key_does_only_what_its_scopes_allow_and_only_in_its_own_organization() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let (_, other_org, other_records) = org_with_work_orders(&app, "rival@example.com").await;
    let key =
        secret(&create_key(&app, &owner, &org, json!({"name": "reader", "permissions": ["records.read_all"]})).await);
    let job =
        app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": "Roof", "status": "open"}}))).await;
    let job = format!("{records}/{}", job.body["id"].as_str().unwrap());

    assert_eq!(app.get(&job, Some(&key)).await.status, 200);
    app.send("DELETE", &job, Some(&key), None).await.assert_problem(403, "forbidden");
    app.send("POST", &records, Some(&key), Some(json!({"data": {"title": "x", "status": "open"}})))
        .await
        .assert_problem(403, "forbidden");
    // Another organization's routes: not found, as for a stranger; nothing about it leaks.
    let theirs = app.get(&other_records, Some(&key)).await;
    theirs.assert_problem(404, "not-found");
    assert!(!theirs.text.contains(&other_org[4..]));
    app.get(&format!("/api/v1/orgs/{other_org}"), Some(&key)).await.assert_problem(404, "not-found");
    // Account routes need a person.
    app.get("/api/v1/me", Some(&key)).await.assert_problem(401, "unauthenticated");
    app.get("/api/v1/orgs", Some(&key)).await.assert_problem(401, "unauthenticated");
    // Keys cannot make or list keys.
    app.get(&format!("/api/v1/orgs/{org}/api-keys"), Some(&key)).await.assert_problem(403, "forbidden");
    create_key(&app, &key, &org, json!({"name": "child", "permissions": ["records.read_all"]}))
        .await
        .assert_problem(403, "forbidden");
    // A mistyped key (checksum) and a made-up one are refused alike.
    let mut typo = key.clone().into_bytes();
    let i = 12;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    app.get(&job, Some(&String::from_utf8(typo).unwrap())).await.assert_problem(401, "unauthenticated");
    let forged = palisade_auth::api_key::mint(&palisade_core::SystemRandomness, "live");
    app.get(&job, Some(secrecy::ExposeSecret::expose_secret(&forged.secret)))
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_key_never_does_more_than_its_creators_current_role() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let (admin, admin_id) = member_with_role(&app, &org, "admin@example.com", "admin").await;
    let key = secret(
        &create_key(
            &app,
            &admin,
            &org,
            json!({"name": "cleanup", "permissions": ["records.read_all", "records.delete"]}),
        )
        .await,
    );
    let job =
        app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": "Roof", "status": "open"}}))).await;
    let job = format!("{records}/{}", job.body["id"].as_str().unwrap());
    let member = format!("/api/v1/orgs/{org}/members/{admin_id}");

    // The creator becomes a viewer: the key keeps read (viewers read) and loses delete.
    let demoted = app.send("PATCH", &member, Some(&owner), Some(json!({"role": "viewer"}))).await;
    assert_eq!(demoted.status, 204, "{}", demoted.text);
    assert_eq!(app.get(&job, Some(&key)).await.status, 200);
    app.send("DELETE", &job, Some(&key), None).await.assert_problem(403, "forbidden");

    // Nobody grants what they do not hold: a viewer cannot make keys at all, and a custom role
    // with api_keys.manage cannot grant a permission it lacks.
    create_key(&app, &admin, &org, json!({"name": "x", "permissions": ["records.read_all"]}))
        .await
        .assert_problem(403, "forbidden");
    let role = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/roles"),
            Some(&owner),
            Some(json!({"name": "integrator", "permissions": ["api_keys.manage", "records.read_all"]})),
        )
        .await;
    let role_id = role.body["id"].as_str().unwrap();
    app.send("PATCH", &member, Some(&owner), Some(json!({"role": role_id}))).await;
    let before = app.count("api_keys").await;
    create_key(&app, &admin, &org, json!({"name": "x", "permissions": ["records.read_all", "records.delete"]}))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(app.count("api_keys").await, before);

    // The creator leaves: the key stops.
    let removed = app.send("DELETE", &member, Some(&owner), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    app.get(&job, Some(&key)).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn revoked_expired_and_address_restricted_keys_are_refused() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let read = json!(["records.read_all"]);

    let revoked = create_key(&app, &owner, &org, json!({"name": "r", "permissions": read})).await;
    let (revoked_key, revoked_id) = (secret(&revoked), revoked.body["id"].as_str().unwrap().to_owned());
    assert_eq!(app.get(&records, Some(&revoked_key)).await.status, 200);
    let gone = app.send("DELETE", &format!("/api/v1/orgs/{org}/api-keys/{revoked_id}"), Some(&owner), None).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    app.get(&records, Some(&revoked_key)).await.assert_problem(401, "unauthenticated");
    let listed = app.get(&format!("/api/v1/orgs/{org}/api-keys"), Some(&owner)).await;
    assert!(listed.body["items"][0]["revoked_at"].as_str().is_some(), "{}", listed.text);

    let elsewhere = secret(
        &create_key(&app, &owner, &org, json!({"name": "ci", "permissions": read, "allowed_ips": ["203.0.113.0/24"]}))
            .await,
    );
    app.get(&records, Some(&elsewhere)).await.assert_problem(403, "address-not-allowed");
    let here = create_key(
        &app,
        &owner,
        &org,
        json!({"name": "local", "permissions": read, "allowed_ips": ["127.0.0.1", "2001:db8::1/32"]}),
    )
    .await;
    assert_eq!(here.body["allowed_ips"], json!(["127.0.0.1/32", "2001:db8::/32"]), "{}", here.text);
    assert_eq!(app.get(&records, Some(&secret(&here))).await.status, 200);

    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring =
        secret(&create_key(&app, &owner, &org, json!({"name": "e", "permissions": read, "expires_at": soon})).await);
    assert_eq!(app.get(&records, Some(&expiring)).await.status, 200);
    app.clock.advance(time::Duration::minutes(61));
    app.get(&records, Some(&expiring)).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn rotation_needs_a_step_up_and_the_old_secret_works_only_for_the_overlap() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let made = create_key(&app, &owner, &org, json!({"name": "sync", "permissions": ["records.read_all"]})).await;
    let (old, old_id) = (secret(&made), made.body["id"].as_str().unwrap().to_owned());
    let rotate = format!("/api/v1/orgs/{org}/api-keys/{old_id}/rotate");

    let rotated = app.send("POST", &rotate, Some(&owner), Some(json!({"overlap_minutes": 60}))).await;
    let new = secret(&rotated);
    assert_ne!(new, old);
    assert_eq!(rotated.body["name"], "sync");
    assert_eq!(rotated.body["rotated_from"], old_id.as_str());
    assert_eq!(rotated.body["permissions"], made.body["permissions"]);
    assert_eq!(app.get(&records, Some(&old)).await.status, 200);
    assert_eq!(app.get(&records, Some(&new)).await.status, 200);
    app.clock.advance(time::Duration::minutes(61));
    app.get(&records, Some(&old)).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.get(&records, Some(&new)).await.status, 200);

    // An hour after sign-in, creating or rotating a key needs a fresh authentication.
    let owner = app.login("owner@example.com").await;
    app.clock.advance(time::Duration::minutes(11));
    let before = app.snapshot().await;
    let new_id = rotated.body["id"].as_str().unwrap();
    app.send("POST", &format!("/api/v1/orgs/{org}/api-keys/{new_id}/rotate"), Some(&owner), Some(json!({})))
        .await
        .assert_problem(403, "step-up-required");
    create_key(&app, &owner, &org, json!({"name": "late", "permissions": ["records.read_all"]}))
        .await
        .assert_problem(403, "step-up-required");
    assert_eq!(app.snapshot().await, before, "nothing written");
    // Revoking never waits for a step-up.
    let revoked = app.send("DELETE", &format!("/api/v1/orgs/{org}/api-keys/{new_id}"), Some(&owner), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    // A revoked key cannot be rotated back to life.
    app.send("POST", "/api/v1/auth/step-up", Some(&owner), Some(json!({"password": palisade_testkit::PASSWORD}))).await;
    app.send("POST", &format!("/api/v1/orgs/{org}/api-keys/{new_id}/rotate"), Some(&owner), Some(json!({})))
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test]
async fn bad_input_no_credentials_and_other_tenants_ids_write_nothing() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = org_with_work_orders(&app, "owner@example.com").await;
    let (rival, rival_org) = app.owner_of("rival@example.com", "Rival").await;
    let theirs = create_key(&app, &rival, &rival_org, json!({"name": "theirs", "permissions": ["org.read"]})).await;
    let their_id = theirs.body["id"].as_str().unwrap().to_owned();
    let keys = format!("/api/v1/orgs/{org}/api-keys");
    let before = app.snapshot().await;

    for (body, field) in [
        (json!({"name": "", "permissions": ["org.read"]}), "name"),
        (json!({"name": "x", "permissions": []}), "permissions"),
        (json!({"name": "x", "permissions": ["records.everything"]}), "permissions/0"),
        (json!({"name": "x", "permissions": ["org.read"], "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "x", "permissions": ["org.read"], "allowed_ips": ["not-an-ip"]}), "allowed_ips/0"),
        (json!({"name": "x", "permissions": ["org.read"], "allowed_ips": []}), "allowed_ips"),
    ] {
        let answer = app.send("POST", &keys, Some(&owner), Some(body.clone())).await;
        answer.assert_problem(422, "validation");
        assert!(
            answer.body["errors"].as_array().unwrap().iter().any(|e| e["pointer"] == format!("/{field}")),
            "{body}: {}",
            answer.text
        );
    }
    app.send("POST", &keys, Some(&owner), Some(json!({"name": "x", "permissions": ["org.read"], "admin": true})))
        .await
        .assert_problem(422, "validation");
    app.send(
        "POST",
        &keys,
        Some(&owner),
        Some(json!({"name": "x", "permissions": ["org.read"], "expires_at": "tomorrow"})),
    )
    .await
    .assert_problem(422, "validation");
    let rotate = format!("{keys}/{their_id}/rotate");
    app.send("POST", &rotate, Some(&owner), Some(json!({"overlap_minutes": -1})))
        .await
        .assert_problem(422, "validation");

    // No or wrong credentials.
    app.send("POST", &keys, None, Some(json!({"name": "x", "permissions": ["org.read"]})))
        .await
        .assert_problem(401, "unauthenticated");
    app.get(&keys, Some("pal_live_nonsense")).await.assert_problem(403, "forbidden");
    app.get(&keys, None).await.assert_problem(401, "unauthenticated");
    app.send("DELETE", &format!("{keys}/{their_id}"), None, None).await.assert_problem(401, "unauthenticated");
    app.send("POST", &rotate, None, Some(json!({}))).await.assert_problem(401, "unauthenticated");

    // Another tenant's key id, through my organization or theirs: not found.
    app.send("DELETE", &format!("{keys}/{their_id}"), Some(&owner), None).await.assert_problem(404, "not-found");
    app.send("POST", &rotate, Some(&owner), Some(json!({}))).await.assert_problem(404, "not-found");
    app.get(&format!("/api/v1/orgs/{rival_org}/api-keys"), Some(&owner)).await.assert_problem(404, "not-found");
    app.send("DELETE", &format!("{keys}/key_garbage"), Some(&owner), None).await.assert_problem(404, "not-found");
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert!(
        app.get(&format!("/api/v1/orgs/{rival_org}/api-keys"), Some(&rival)).await.body["items"][0]["revoked_at"]
            .is_null()
    );
}
