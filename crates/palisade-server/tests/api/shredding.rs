//! Deleting an organization is crypto-shredding: scheduled by an owner after a step-up,
//! cancellable for the grace period, then its wrapping keys are destroyed in the key provider and
//! its rows deleted. A database dump taken before decrypts nothing afterwards, even with every
//! key that remains; other organizations are untouched.

use palisade_crypto::provider::{KeyProvider, ProviderError};
use palisade_crypto::provider_local::{LocalProvider, LocalProviderFiles};
use palisade_testkit::TestApp;
use serde_json::json;

use crate::collections::{create_collection, member_with_role};

const CANARY: &str = "shred-me-CANARY-71c2";

async fn org_with_data(app: &TestApp, email: &str, name: &str) -> (String, String) {
    let (owner, org) = app.owner_of(email, name).await;
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"},
        "ssn": {"type": "string", "x-palisade-sensitive": true}}});
    create_collection(app, &owner, &org, "people", schema).await;
    let record = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections/people/records"),
            Some(&owner),
            Some(json!({"data": {"name": "Ana", "ssn": format!("{CANARY}-{name}")}})),
        )
        .await;
    assert_eq!(record.status, 201, "{}", record.text);
    let secret = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/secrets"),
            Some(&owner),
            Some(json!({"name": "api", "value": format!("{CANARY}-{name}")})),
        )
        .await;
    assert_eq!(secret.status, 201, "{}", secret.text);
    (owner, org)
}

#[tokio::test]
async fn only_an_owner_after_a_step_up_schedules_a_deletion_and_it_can_be_cancelled() {
    let app = TestApp::spawn().await;
    let (owner, org) = org_with_data(&app, "owner@example.com", "A").await;
    let (admin, _) = member_with_role(&app, &org, "admin@example.com", "admin").await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Other").await;
    let path = format!("/api/v1/orgs/{org}");
    let before = app.snapshot().await;
    app.send("DELETE", &path, None, None).await.assert_problem(401, "unauthenticated");
    app.send("DELETE", &path, Some(&admin), None).await.assert_problem(403, "forbidden");
    app.send("DELETE", &path, Some(&stranger), None).await.assert_problem(404, "not-found");
    app.clock.advance(time::Duration::minutes(11));
    app.send("DELETE", &path, Some(&owner), None).await.assert_problem(403, "step-up-required");
    assert_eq!(app.snapshot().await, before, "nothing written by a refused request");

    let owner = app.login("owner@example.com").await;
    let scheduled = app.send("DELETE", &path, Some(&owner), None).await;
    assert_eq!(scheduled.status, 202, "{}", scheduled.text);
    let due = scheduled.body["deletion_due_at"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&path, Some(&owner)).await.body["deletion_due_at"], due.as_str());
    app.send("DELETE", &path, Some(&owner), None).await.assert_problem(409, "conflict");
    // Members keep working during the grace period.
    assert_eq!(app.get(&format!("{path}/secrets"), Some(&owner)).await.status, 200);

    app.send("DELETE", &format!("{path}/deletion"), Some(&admin), None).await.assert_problem(403, "forbidden");
    app.send("DELETE", &format!("{path}/deletion"), Some(&stranger), None).await.assert_problem(404, "not-found");
    let cancelled = app.send("DELETE", &format!("{path}/deletion"), Some(&owner), None).await;
    assert_eq!(cancelled.status, 204, "{}", cancelled.text);
    assert!(app.get(&path, Some(&owner)).await.body.get("deletion_due_at").is_none());
    app.send("DELETE", &format!("{path}/deletion"), Some(&owner), None).await.assert_problem(404, "not-found");
    let events = app.get(&format!("{path}/audit-events?action=org.deletion_scheduled"), Some(&owner)).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1, "{}", events.text);
    let events = app.get(&format!("{path}/audit-events?action=org.deletion_cancelled"), Some(&owner)).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1, "{}", events.text);
    // Once the job has claimed a deletion it can no longer be cancelled (its keys may be gone).
    let scheduled = app.send("DELETE", &path, Some(&owner), None).await;
    assert_eq!(scheduled.status, 202, "{}", scheduled.text);
    let org_uuid = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    let admin_db = app.admin().await;
    admin_db
        .execute("UPDATE palisade.orgs SET shredding_started_at = now() WHERE tenant_id = $1", &[&org_uuid])
        .await
        .unwrap();
    app.send("DELETE", &format!("{path}/deletion"), Some(&owner), None).await.assert_problem(404, "not-found");
    admin_db
        .execute(
            "UPDATE palisade.orgs SET shredding_started_at = NULL, deletion_due_at = NULL WHERE tenant_id = $1",
            &[&org_uuid],
        )
        .await
        .unwrap();
    // Cancelled: the job leaves it alone even long after.
    app.clock.advance(time::Duration::days(30));
    assert_eq!(app.app.run_org_shredding().await.unwrap(), 0);
}

#[tokio::test]
async fn after_the_grace_period_a_dump_taken_before_decrypts_nothing_and_other_orgs_are_untouched() {
    let app = TestApp::spawn().await;
    let (owner_a, org_a) = org_with_data(&app, "a@example.com", "A").await;
    let (_, org_b) = org_with_data(&app, "b@example.com", "B").await;
    // A KEK rotation first, so the organization has had two wrapping keys.
    app.app.rotate_kek(|_, _| {}).await.unwrap();
    let scheduled = app.send("DELETE", &format!("/api/v1/orgs/{org_a}"), Some(&owner_a), None).await;
    assert_eq!(scheduled.status, 202, "{}", scheduled.text);
    let a = org_a.parse::<palisade_core::OrgId>().unwrap().as_uuid();

    // The "dump": everything the database holds for A's encrypted data.
    let admin = app.admin().await;
    let keys: Vec<(uuid::Uuid, String, Vec<u8>)> = admin
        .query("SELECT id, wrapping_key, wrapped FROM palisade.org_data_keys WHERE tenant_id = $1", &[&a])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(keys.len(), 1);
    let sealed: Vec<Vec<u8>> = admin
        .query(
            "SELECT sealed FROM palisade.records WHERE tenant_id = $1 AND sealed IS NOT NULL
             UNION ALL SELECT sealed FROM palisade.secrets WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sealed.len(), 2);
    // Before the deletion, that dump plus the key provider decrypts (the premise).
    let files = || {
        let dir = app.instance_key_file.parent().unwrap();
        LocalProviderFiles { kek: dir.join("kek.key"), store: dir.join("keystore.json") }
    };
    let context = format!("palisade-dek-v1|{org_a}|{}", keys[0].0);
    let provider = LocalProvider::open(files()).unwrap();
    assert!(provider.unwrap(&keys[0].1, &keys[0].2, context.as_bytes()).is_ok());

    // Within the grace period nothing happens; a server clock set ahead does not skip it (the
    // database's clock decides), and neither does a deletion under legal hold.
    assert_eq!(app.app.run_org_shredding().await.unwrap(), 0);
    app.clock.advance(time::Duration::days(8));
    assert_eq!(app.app.run_org_shredding().await.unwrap(), 0, "a time ahead of the database clock is refused");
    app.clock.advance(-time::Duration::days(8));
    admin
        .execute("UPDATE palisade.orgs SET deletion_due_at = now() - interval '1 second' WHERE tenant_id = $1", &[&a])
        .await
        .unwrap();
    admin.execute("UPDATE palisade.orgs SET legal_hold = true WHERE tenant_id = $1", &[&a]).await.unwrap();
    assert_eq!(app.app.run_org_shredding().await.unwrap(), 0, "legal hold stops the shredding");
    admin.execute("UPDATE palisade.orgs SET legal_hold = false WHERE tenant_id = $1", &[&a]).await.unwrap();
    assert_eq!(app.app.run_org_shredding().await.unwrap(), 1);

    // Every wrapping key A ever had is gone from the provider; the dump's data key unwraps
    // under none of them, nor under any key that remains.
    let provider = LocalProvider::open(files()).unwrap();
    for generation in 1..=3 {
        let name = format!("{org_a}.v{generation}");
        assert!(!provider.has_key(&name).unwrap(), "{name} survived");
        assert!(matches!(provider.unwrap(&name, &keys[0].2, context.as_bytes()), Err(ProviderError::NoSuchKey(_))));
    }
    let store: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(files().store).unwrap()).unwrap();
    let remaining: Vec<&String> = store["keys"].as_object().unwrap().keys().collect();
    assert!(!remaining.is_empty() && remaining.iter().all(|n| !n.starts_with(&org_a)), "{remaining:?}");
    for name in remaining {
        assert!(provider.unwrap(name, &keys[0].2, context.as_bytes()).is_err(), "{name} opens A's data key");
    }
    // No byte of the dump is plaintext either.
    for value in &sealed {
        assert_eq!(value[0], 0xE1);
        assert!(!String::from_utf8_lossy(value).contains(CANARY));
    }

    // A's rows are gone; the instance log keeps the fact; B works as before.
    for table in ["orgs", "records", "secrets", "org_data_keys", "memberships", "collections", "audit_events"] {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM palisade.{table} WHERE tenant_id = $1"), &[&a])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} still holds rows of the shredded organization");
    }
    let shredded: i64 = admin
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id IS NULL AND action = 'org.shredded' AND target_id = $1", &[&a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shredded, 1);
    let owner_a = app.login("a@example.com").await;
    app.get(&format!("/api/v1/orgs/{org_a}"), Some(&owner_a)).await.assert_problem(404, "not-found");
    let owner_b = app.login("b@example.com").await;
    let b = org_b.parse().unwrap();
    let value = app.app.reveal_secret_for_use(&app.session_proof(&owner_b), b, "api").await.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&value), format!("{CANARY}-B"));
    let records = app.get(&format!("/api/v1/orgs/{org_b}/collections/people/records"), Some(&owner_b)).await;
    assert!(records.text.contains(&format!("{CANARY}-B")), "{}", records.text);
}
