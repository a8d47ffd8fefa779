//! Encryption keys: status as a reviewer sees it, data-key rotation (on demand, scheduled,
//! resumed after a crash, reads never blocked), KEK rotation, and the `palisade keys` commands.

use palisade_core::OrgId;
use palisade_testkit::TestApp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::collections::member_with_role;
use crate::support::{command, run_keys};

fn people() -> Value {
    json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "ssn": {"type": "string", "x-palisade-sensitive": true}}, "required": ["name"]})
}

struct Org {
    owner: String,
    org: String,
    id: OrgId,
    records: String,
}

/// An organization with a sensitive collection, `n` records and one secret.
async fn org_with_sealed_values(app: &TestApp, email: &str, n: usize) -> (Org, Vec<String>) {
    let (owner, org) = app.owner_of(email, "Crew").await;
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(&owner),
            Some(json!({"name": "people", "schema": people()})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let records = format!("/api/v1/orgs/{org}/collections/people/records");
    let mut ids = Vec::new();
    for i in 0..n {
        let made = app
            .send(
                "POST",
                &records,
                Some(&owner),
                Some(json!({"data": {"name": format!("p{i}"), "ssn": format!("ssn-{i}")}})),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let secret = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/secrets"),
            Some(&owner),
            Some(json!({"name": "api", "value": "secret-value"})),
        )
        .await;
    assert_eq!(secret.status, 201, "{}", secret.text);
    let id = org.parse().unwrap();
    (Org { owner, org, id, records }, ids)
}

/// The data key each stored value of the organization is under.
async fn envelope_keys(app: &TestApp, org: OrgId) -> Vec<Uuid> {
    app.admin()
        .await
        .query(
            "SELECT palisade.envelope_key(sealed) FROM palisade.records WHERE tenant_id = $1 AND sealed IS NOT NULL
             UNION ALL SELECT palisade.envelope_key(sealed) FROM palisade.secrets WHERE tenant_id = $1",
            &[&org.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn all_read_back(app: &TestApp, o: &Org, ids: &[String]) {
    for (i, id) in ids.iter().enumerate() {
        let seen = app.get(&format!("{}/{id}", o.records), Some(&o.owner)).await;
        assert_eq!(seen.status, 200, "{}", seen.text);
        assert_eq!(seen.body["data"]["ssn"], format!("ssn-{i}"), "{}", seen.text);
    }
    let value = app.app.reveal_secret_for_use(&app.session_proof(&o.owner), o.id, "api").await.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&value), "secret-value");
}

#[tokio::test]
async fn key_status_shows_provider_keys_and_schedule_to_security_admins_only() {
    let app = TestApp::spawn().await;
    let (o, _) = org_with_sealed_values(&app, "owner@example.com", 2).await;
    let path = format!("/api/v1/orgs/{}/keys", o.org);
    let status = app.get(&path, Some(&o.owner)).await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.body["provider"], "local");
    assert_eq!(status.body["master_key_id"].as_str().unwrap().len(), 16);
    assert_eq!(status.body["rotation_period_days"], 365);
    assert_eq!(status.body["rotating"], false);
    let keys = status.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", status.text);
    assert_eq!(keys[0]["state"], "active");
    assert_eq!(keys[0]["values"], 3);
    assert_eq!(keys[0]["wrapping_key"], format!("{}.v1", o.org));
    assert!(keys[0]["id"].as_str().unwrap().starts_with("dek_"));
    let created = time::OffsetDateTime::parse(
        keys[0]["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let next = time::OffsetDateTime::parse(
        status.body["next_rotation_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(next - created, time::Duration::days(365));
    assert!(keys[0].get("wrapped").is_none() && keys[0].get("key").is_none(), "no key material, wrapped or not");

    app.get(&path, None).await.assert_problem(401, "unauthenticated");
    let (manager, _) = member_with_role(&app, &o.org, "manager@example.com", "manager").await;
    app.get(&path, Some(&manager)).await.assert_problem(403, "forbidden");
    let (stranger, _) = app.owner_of("stranger@example.com", "Other").await;
    app.get(&path, Some(&stranger)).await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn a_rotation_killed_halfway_resumes_and_no_value_is_lost_or_encrypted_twice() {
    let app = TestApp::spawn().await;
    let (o, ids) = org_with_sealed_values(&app, "owner@example.com", 7).await;
    let old = envelope_keys(&app, o.id).await;
    assert_eq!(old.len(), 8);
    let old_key = old[0];

    app.app.start_org_key_rotation(o.id, "on demand").await.unwrap();
    // A second start while re-encrypting is refused.
    assert!(matches!(
        app.app.start_org_key_rotation(o.id, "on demand").await,
        Err(palisade_app::AppError::Conflict(_))
    ));
    let status = app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await;
    assert_eq!(status.body["rotating"], true);
    assert_eq!(status.body["values_left_to_reencrypt"], 8);

    // One batch of three, then the "crash": nothing else runs this rotation.
    let step = app.app.rotation_step(o.id, 3).await.unwrap();
    assert_eq!((step.reencrypted, step.done), (3, false));
    assert_eq!(app.app.values_left_to_reencrypt(o.id).await.unwrap(), 5);
    let status = app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await;
    assert_eq!(status.body["values_left_to_reencrypt"], 5, "progress in the API");
    let keys = envelope_keys(&app, o.id).await;
    let new_key = *keys.iter().find(|k| **k != old_key).unwrap();
    assert_eq!(keys.iter().filter(|k| **k == new_key).count(), 3);
    // Reads under both keys work meanwhile, and a write lands under the new key.
    all_read_back(&app, &o, &ids).await;
    let updated = app
        .send("PATCH", &format!("{}/{}", o.records, ids[6]), Some(&o.owner), Some(json!({"data": {"name": "renamed"}})))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(envelope_keys(&app, o.id).await.iter().filter(|k| **k == new_key).count(), 4);

    // The job picks it up where it stopped (as any node would after a restart).
    let moved = app.app.run_key_maintenance(10).await.unwrap();
    assert_eq!(moved, 4, "only what was still under the old key");
    let keys = envelope_keys(&app, o.id).await;
    assert!(keys.iter().all(|k| *k == new_key), "everything under the new key");
    all_read_back(&app, &o, &ids).await;
    // The old key stays until every node has dropped it from its cache (a node that missed the
    // rotation may still seal under it): then the job deletes it.
    let status = app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await;
    assert_eq!(status.body["keys"].as_array().unwrap().len(), 2, "{}", status.text);
    assert_eq!(status.body["values_left_to_reencrypt"], 0);
    app.clock.advance(app.app.retired_key_min_age() + time::Duration::seconds(1));
    assert_eq!(app.app.run_key_maintenance(10).await.unwrap(), 0);
    let status = app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await;
    assert_eq!(status.body["rotating"], false, "{}", status.text);
    assert_eq!(status.body["keys"].as_array().unwrap().len(), 1, "the old key is deleted");
    // Nothing can be written under the deleted key any more (a node whose cache missed the
    // rotation is refused, never left with a value nobody can decrypt).
    let stale = app
        .admin()
        .await
        .execute(
            "UPDATE palisade.records SET sealed = overlay(sealed PLACING uuid_send($1) FROM 2 FOR 16) WHERE tenant_id = $2",
            &[&old_key, &o.id.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code().map(|c| c.code()), Some("PAKG1"), "{stale}");
    let events =
        app.get(&format!("/api/v1/orgs/{}/audit-events?action=keys.rotation_completed", o.org), Some(&o.owner)).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1, "{}", events.text);
    let started =
        app.get(&format!("/api/v1/orgs/{}/audit-events?action=keys.rotation_started", o.org), Some(&o.owner)).await;
    assert_eq!(started.body["items"][0]["details"]["reason"], "on demand");
    assert_eq!(started.body["items"][0]["actor"]["kind"], "system");
}

#[tokio::test]
async fn a_data_key_older_than_the_period_is_rotated_by_the_scheduled_job() {
    let app = TestApp::spawn().await;
    let (mut o, ids) = org_with_sealed_values(&app, "owner@example.com", 2).await;
    assert_eq!(app.app.run_key_maintenance(10).await.unwrap(), 0, "nothing due yet");
    let before = envelope_keys(&app, o.id).await[0];
    app.clock.advance(time::Duration::days(366));
    o.owner = app.login("owner@example.com").await;
    assert_eq!(app.app.run_key_maintenance(10).await.unwrap(), 3);
    let after = envelope_keys(&app, o.id).await;
    assert!(after.iter().all(|k| *k != before));
    let events =
        app.get(&format!("/api/v1/orgs/{}/audit-events?action=keys.rotation_started", o.org), Some(&o.owner)).await;
    assert_eq!(events.body["items"][0]["details"]["reason"], "scheduled", "{}", events.text);
    all_read_back(&app, &o, &ids).await;
}

#[tokio::test]
async fn kek_rotation_rewraps_every_data_key_and_destroys_the_old_wrapping_keys() {
    let app = TestApp::spawn().await;
    let (o, ids) = org_with_sealed_values(&app, "owner@example.com", 2).await;
    let store = app.instance_key_file.parent().unwrap().join("keystore.json");
    let master_before =
        app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await.body["master_key_id"].clone();
    let data_before = envelope_keys(&app, o.id).await;
    let mut seen = Vec::new();
    assert!(app.app.rotate_kek(|scope, n| seen.push((scope.to_owned(), n))).await.unwrap());
    assert_eq!(seen.len(), 2, "{seen:?}");
    let status = app.get(&format!("/api/v1/orgs/{}/keys", o.org), Some(&o.owner)).await;
    assert_ne!(status.body["master_key_id"], master_before);
    assert_eq!(status.body["keys"][0]["wrapping_key"], format!("{}.v2", o.org));
    assert!(status.body["keys"][0]["rewrapped_at"].as_str().is_some());
    assert_eq!(envelope_keys(&app, o.id).await, data_before, "no data was re-encrypted");
    let store = std::fs::read_to_string(store).unwrap();
    assert!(store.contains(&format!("{}.v2", o.org)) && !store.contains(&format!("{}.v1", o.org)), "{store}");
    assert!(!store.contains("instance.v1"));
    all_read_back(&app, &o, &ids).await;
    let events = app.get(&format!("/api/v1/orgs/{}/audit-events?action=keys.rewrapped", o.org), Some(&o.owner)).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_keys_commands_show_status_rotate_with_progress_and_rotate_the_kek() {
    let app = TestApp::spawn().await;
    let (o, ids) = org_with_sealed_values(&app, "owner@example.com", 3).await;
    let mut envs = app.key_envs();
    envs.push(("PALISADE_DATABASE_URL", app.db.runtime_dsn()));
    // With only the runtime role's connection the key keeper's work is refused, and says what
    // to set; the provider's master key is left alone.
    let runtime_only: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let files_before = (std::fs::read(&envs[1].1).unwrap(), std::fs::read(&envs[2].1).unwrap());
    for args in [&["rotate", "--org", o.org.as_str()][..], &["rotate-kek"], &["status"]] {
        let out = command(&runtime_only).arg("keys").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("PALISADE_DATABASE_KEYS_URL"), "{args:?}: {err}");
    }
    let files_after = (std::fs::read(&envs[1].1).unwrap(), std::fs::read(&envs[2].1).unwrap());
    assert!(files_after == files_before, "the KEK and the key store are untouched");
    envs.push(("PALISADE_DATABASE_KEYS_URL", app.db.keys_dsn()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| run_keys(&envs, args);
    let (code, status, err) = run(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status.contains("Key provider: local"), "{status}");
    assert!(
        status.lines().any(|l| l.contains(&o.org) && l.contains("active") && l.trim_end().ends_with('4')),
        "{status}"
    );
    assert!(status.lines().any(|l| l.starts_with("instance")), "{status}");

    let (code, out, err) = run(&["rotate", "--org", &o.org]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("rotation complete; 4 values re-encrypted"), "{out}");
    all_read_back(&app, &o, &ids).await;

    let (code, out, err) = run(&["rotate", "--org", "org_01h455vb4pex5vsknk084sn02q"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("palisade keys status"), "{err}");
    let (code, _, err) = run(&["rotate", "--org", "nonsense"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not an organization id"), "{err}");

    let (code, out, err) = run(&["rotate-kek"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("master key is replaced"), "{out}");
    assert!(out.contains("Back up the key store"), "{out}");
    // The running server follows the rotated files (it reloads the store when it changes).
    app.app.keyring.forget(palisade_app::keyring::Scope::Org(o.id));
    all_read_back(&app, &o, &ids).await;
}

/// The key keeper's jobs belong to the `_keys` login alone (#7): SQL injected into a request's
/// connection cannot start a rotation, rewrite sealed values, rewrap a key or shred an
/// organization, nor read another organization's keys; the key jobs' login can, and is itself
/// as unprivileged as the runtime role (owns nothing, no BYPASSRLS).
#[tokio::test]
async fn key_keeper_work_is_refused_to_the_runtime_role_and_runs_as_the_keys_login() {
    let app = TestApp::spawn().await;
    let (a, _) = org_with_sealed_values(&app, "a@example.com", 1).await;
    let (b, _) = org_with_sealed_values(&app, "b@example.com", 1).await;
    let (a_id, b_id) = (a.id.as_uuid(), b.id.as_uuid());
    let code = |err: tokio_postgres::Error| err.code().map(|c| c.code().to_owned()).unwrap_or_default();
    let admin = app.admin().await;
    let b_keys = "SELECT string_agg(id::text || encode(wrapped, 'hex') || coalesce(retired_at::text, ''), ',' ORDER BY id) \
                  FROM palisade.org_data_keys WHERE tenant_id = $1";
    let b_before: String = admin.query_one(b_keys, &[&b_id]).await.unwrap().get(0);

    // 1. Every job function: permission denied before it does anything.
    let runtime = app.runtime().await;
    for sql in [
        "SELECT * FROM palisade.key_work_due(now(), interval '1 day', 10)".to_owned(),
        "SELECT * FROM palisade.orgs_with_keys()".to_owned(),
        format!(
            "SELECT palisade.start_key_rotation('{b_id}', gen_random_uuid(), 'x.v1', '\\x00', now(), gen_random_uuid(), 'on demand')"
        ),
        format!("SELECT * FROM palisade.rotation_batch('{b_id}', gen_random_uuid(), 10)"),
        format!("SELECT palisade.rotation_apply('{b_id}', '{{}}', '{{}}', '{{}}', '{{}}')"),
        format!(
            "SELECT palisade.finish_key_rotation('{b_id}', gen_random_uuid(), now(), gen_random_uuid(), interval '0')"
        ),
        format!(
            "SELECT palisade.rewrap_org_key('{b_id}', gen_random_uuid(), 'a', 'b', '\\x00', now(), gen_random_uuid())"
        ),
        "SELECT * FROM palisade.orgs_due_for_shredding(now(), 10)".to_owned(),
        format!("SELECT palisade.begin_shredding('{b_id}', now())"),
        format!("SELECT palisade.shred_org('{b_id}', now(), gen_random_uuid())"),
    ] {
        let err = runtime.batch_execute(&sql).await.unwrap_err();
        assert_eq!(code(err), "42501", "{sql}");
    }

    // 2. Key status: another organization's keys are "no such organization", with no tenant
    // entered and from inside A; A's own keys are there for A's request.
    let status = "SELECT count(*) FROM palisade.org_key_rows($1)";
    let err = runtime.query_one(status, &[&b_id]).await.unwrap_err();
    assert_eq!(code(err), "PA404");
    let proof = app.session_proof(&a.owner).to_db();
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof, &a_id]).await.unwrap();
    let own: i64 = runtime.query_one(status, &[&a_id]).await.unwrap().get(0);
    assert_eq!(own, 1, "A's request sees A's data key");
    let err = runtime.query_one(status, &[&b_id]).await.unwrap_err();
    assert_eq!(code(err), "PA404");
    runtime.batch_execute("ROLLBACK").await.unwrap();

    // 3. The key jobs' login does the work, for every organization.
    let keys = app.key_jobs().await;
    let orgs: i64 = keys.query_one("SELECT count(*) FROM palisade.orgs_with_keys()", &[]).await.unwrap().get(0);
    assert_eq!(orgs, 2);
    let b_rows: i64 = keys.query_one(status, &[&b_id]).await.unwrap().get(0);
    assert_eq!(b_rows, 1);
    let facts = palisade_store::catalog::current_role_facts(&keys).await.unwrap();
    assert_eq!(facts.problems(), Vec::<String>::new(), "the keys login is unprivileged");
    assert_eq!(palisade_store::catalog::key_job_problems(&runtime).await.unwrap(), Vec::<String>::new());

    // 4. Nothing of B's keys changed.
    let b_after: String = admin.query_one(b_keys, &[&b_id]).await.unwrap().get(0);
    assert_eq!(b_after, b_before);
}
