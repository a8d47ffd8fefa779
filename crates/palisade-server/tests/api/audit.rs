//! The verifiable audit trail: sealing, verification that points at the tampered position,
//! checkpoints that survive a full rewrite, the list, the export, and who may use them.

use palisade_core::OrgId;
use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::{member_with_role, work_orders};

/// An organization with a collection and `n` records: a few dozen events.
pub(crate) async fn busy_org(app: &TestApp, n: usize) -> (String, String) {
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/collections"),
        Some(&owner),
        Some(json!({"name": "work_orders", "schema": work_orders()})),
    )
    .await;
    for i in 0..n {
        let made = app
            .send(
                "POST",
                &format!("/api/v1/orgs/{org}/collections/work_orders/records"),
                Some(&owner),
                Some(json!({"data": {"title": format!("job {i}"), "status": "open"}})),
            )
            .await;
        assert_eq!(made.status, 201);
    }
    (owner, org)
}

pub(crate) fn tenant(org: &str) -> uuid::Uuid {
    org.parse::<OrgId>().unwrap().as_uuid()
}

pub(crate) async fn verify(app: &TestApp, token: &str, org: &str) -> Value {
    let answer = app.get(&format!("/api/v1/orgs/{org}/audit-events/verify"), Some(token)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body
}

pub(crate) async fn event_count(app: &TestApp, org: &str) -> i64 {
    app.admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id = $1", &[&tenant(org)])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_event_is_sealed_into_the_chain_and_the_chain_verifies() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 5).await;
    let events = event_count(&app, &org).await;
    assert!(events >= 7, "{events}");
    let report = verify(&app, &owner, &org).await;
    assert_eq!(
        report,
        json!({"valid": true, "events": events, "first_bad_seq": null, "reason": null, "checkpoints_verified": 0})
    );
    // Sealed events carry their position; the list is newest first.
    let list = app.get(&format!("/api/v1/orgs/{org}/audit-events?limit=3"), Some(&owner)).await;
    let seqs: Vec<i64> = list.body["items"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [events, events - 1, events - 2]);
    assert_eq!(list.body["items"][0]["action"], "record.created");
    assert!(list.body["items"][0]["target"]["id"].as_str().unwrap().starts_with("rec_"));
    assert!(list.body["items"][0]["actor"]["id"].as_str().unwrap().starts_with("usr_"));
    // Two organizations, two independent chains.
    let (other, other_org) = app.owner_of("other@example.com", "Other").await;
    let theirs = verify(&app, &other, &other_org).await;
    assert_eq!(
        (theirs["valid"].as_bool(), theirs["events"].as_i64()),
        (Some(true), Some(event_count(&app, &other_org).await))
    );
}

/// An event whose transaction commits after later events were sealed is still chained: the
/// sequencer only passes transactions that have finished.
#[tokio::test]
async fn a_slow_transaction_s_event_is_never_skipped() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 1).await;
    let slow = app.admin().await;
    slow.batch_execute("BEGIN").await.unwrap();
    slow.execute(
        "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, action, outcome) VALUES (gen_random_uuid(), $1, now(), 'test.slow', 'success')",
        &[&tenant(&org)],
    )
    .await
    .unwrap();
    // Later events commit and the sequencer runs while the slow one is open.
    busy_write(&app, &owner, &org).await;
    app.app.seal_audit().await.unwrap();
    slow.batch_execute("COMMIT").await.unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!(
        (report["valid"].as_bool(), report["events"].as_i64()),
        (Some(true), Some(event_count(&app, &org).await))
    );
}

pub(crate) async fn busy_write(app: &TestApp, owner: &str, org: &str) {
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections/work_orders/records"),
            Some(owner),
            Some(json!({"data": {"title": "late", "status": "open"}})),
        )
        .await;
    assert_eq!(made.status, 201);
}

async fn seq_of_nth_event(app: &TestApp, org: &str, n: i64) -> (i64, uuid::Uuid) {
    let row = app
        .admin()
        .await
        .query_one(
            "SELECT seq, event_id FROM palisade.audit_chain WHERE tenant_id = $1 AND seq = $2",
            &[&tenant(org), &n],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn altering_deleting_or_splicing_one_event_is_found_at_its_position() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 6).await;
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);
    let admin = app.admin().await;

    // Alter one event as a superuser.
    let (seq, id) = seq_of_nth_event(&app, &org, 4).await;
    admin
        .execute("UPDATE palisade.audit_events SET details = '{\"forged\": true}' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!((report["valid"].as_bool(), report["first_bad_seq"].as_i64()), (Some(false), Some(seq)), "{report}");
    admin.execute("UPDATE palisade.audit_events SET details = '{\"collection\": \"work_orders\", \"fields\": [\"status\", \"title\"]}' WHERE id = $1", &[&id]).await.unwrap();
    assert_eq!(verify(&app, &owner, &org).await["valid"], true, "the original details verify again");

    // Delete one event.
    let (seq, id) = seq_of_nth_event(&app, &org, 5).await;
    let saved =
        admin.query_one("SELECT row_to_json(e) FROM palisade.audit_events e WHERE id = $1", &[&id]).await.unwrap();
    let saved: Value = saved.get(0);
    admin.execute("DELETE FROM palisade.audit_events WHERE id = $1", &[&id]).await.unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!((report["valid"].as_bool(), report["first_bad_seq"].as_i64()), (Some(false), Some(seq)), "{report}");
    admin
        .execute(
            "INSERT INTO palisade.audit_events SELECT * FROM json_populate_record(NULL::palisade.audit_events, $1)",
            &[&saved],
        )
        .await
        .unwrap();
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);

    // Delete a chain position (and its event) outright: the gap is found.
    let (seq, id) = seq_of_nth_event(&app, &org, 3).await;
    admin.execute("DELETE FROM palisade.audit_chain WHERE event_id = $1", &[&id]).await.unwrap();
    admin.execute("DELETE FROM palisade.audit_events WHERE id = $1", &[&id]).await.unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!((report["valid"].as_bool(), report["first_bad_seq"].as_i64()), (Some(false), Some(seq)), "{report}");
}

#[tokio::test]
async fn an_event_spliced_into_the_history_is_found_where_it_was_put() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 4).await;
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);
    let admin = app.admin().await;
    let t = tenant(&org);
    // Make room at position 3 and put a forged event there, with a plausible hash.
    admin.batch_execute("BEGIN").await.unwrap();
    admin
        .execute("UPDATE palisade.audit_chain SET seq = seq + 1000000 WHERE tenant_id = $1 AND seq >= 3", &[&t])
        .await
        .unwrap();
    admin
        .execute("UPDATE palisade.audit_chain SET seq = seq - 999999 WHERE tenant_id = $1 AND seq >= 1000000", &[&t])
        .await
        .unwrap();
    admin
        .execute(
            "WITH e AS (INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, action, outcome, xid)
                        VALUES (gen_random_uuid(), $1, now(), 'user.removed', 'success', '1') RETURNING *)
             INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash)
             SELECT $1, 3, e.id, palisade.audit_hash(3, (SELECT hash FROM palisade.audit_chain WHERE tenant_id = $1 AND seq = 2), e) FROM e",
            &[&t],
        )
        .await
        .unwrap();
    admin.execute("UPDATE palisade.audit_chain_heads SET seq = seq + 1 WHERE tenant_id = $1", &[&t]).await.unwrap();
    admin.batch_execute("COMMIT").await.unwrap();
    let report = verify(&app, &owner, &org).await;
    // Position 3 itself now verifies (the forger hashed it); the chain breaks right after it.
    assert_eq!((report["valid"].as_bool(), report["first_bad_seq"].as_i64()), (Some(false), Some(4)), "{report}");
}

#[tokio::test]
async fn an_event_slipped_in_behind_the_sequencer_is_found() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 2).await;
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);
    // A row with a transaction id the sequencer has long passed, in no chain position: the
    // chain walk cannot see it, only the count of stray events can.
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, action, outcome, xid)
             VALUES (gen_random_uuid(), $1, now(), 'user.removed', 'success', '1')",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!(report["valid"], false, "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("1 sealed-period event(s) are in no chain position"),
        "{report}"
    );
}

#[tokio::test]
async fn a_kept_checkpoint_catches_a_rewritten_and_rehashed_history() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 4).await;
    app.get(&format!("/api/v1/orgs/{org}/audit-checkpoints/latest"), Some(&owner))
        .await
        .assert_problem(404, "not-found");
    // An hour after the chain began, the sequencer signs a checkpoint. (The head's clock is
    // moved, not the server's: the owner's session would go idle.)
    app.app.seal_audit().await.unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 0, "not due yet");
    app.admin()
        .await
        .execute(
            "UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '61 minutes' WHERE tenant_id = $1",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    let kept = app.get(&format!("/api/v1/orgs/{org}/audit-checkpoints/latest"), Some(&owner)).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(kept.body["format"], "palisade-audit-checkpoint-v1");
    assert_eq!(kept.body["seq"].as_i64(), Some(event_count(&app, &org).await));
    let report = verify(&app, &owner, &org).await;
    assert_eq!((report["valid"].as_bool(), report["checkpoints_verified"].as_i64()), (Some(true), Some(1)));

    // A superuser rewrites event 2, re-hashes the whole tail with the server's own function,
    // moves the head and deletes the stored checkpoints.
    let admin = app.admin().await;
    let t = tenant(&org);
    let (_, id) = seq_of_nth_event(&app, &org, 2).await;
    admin
        .execute("UPDATE palisade.audit_events SET details = '{\"rewritten\": true}' WHERE id = $1", &[&id])
        .await
        .unwrap();
    rehash_history(&admin, t).await;
    // On its own the rewritten chain is consistent…
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);
    // …but not with the checkpoint the customer kept.
    let against = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/audit-events/verify"),
            Some(&owner),
            Some(json!({"checkpoint": kept.body})),
        )
        .await;
    assert_eq!(against.status, 200, "{}", against.text);
    assert_eq!(
        (against.body["valid"].as_bool(), against.body["first_bad_seq"].as_i64()),
        (Some(false), kept.body["seq"].as_i64()),
        "{}",
        against.text
    );
    // A checkpoint with a forged hash does not carry a valid signature.
    let mut forged = kept.body.clone();
    forged["hash"] = json!("ab".repeat(32));
    let answer = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/audit-events/verify"),
            Some(&owner),
            Some(json!({"checkpoint": forged})),
        )
        .await;
    assert_eq!(answer.body["valid"], false);
    assert!(answer.body["reason"].as_str().unwrap().contains("signature"), "{}", answer.text);
    // Junk, or another organization's checkpoint, is refused as input.
    let (other, other_org) = app.owner_of("other@example.com", "Other").await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{other_org}/audit-events/verify"),
        Some(&other),
        Some(json!({"checkpoint": kept.body})),
    )
    .await
    .assert_problem(422, "validation");
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/audit-events/verify"),
        Some(&owner),
        Some(json!({"checkpoint": {"seq": 1}})),
    )
    .await
    .assert_problem(422, "validation");
}

#[tokio::test]
async fn checkpoints_come_every_thousand_events_even_within_the_hour() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 1).await;
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, action, outcome)
             SELECT gen_random_uuid(), $1, now(), 'test.bulk', 'success' FROM generate_series(1, 1000)",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    app.app.seal_audit().await.unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 0, "nothing new: nothing due");
    let list = app.get(&format!("/api/v1/orgs/{org}/audit-checkpoints"), Some(&owner)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let report = verify(&app, &owner, &org).await;
    assert_eq!((report["valid"].as_bool(), report["checkpoints_verified"].as_i64()), (Some(true), Some(1)));
    let sealed: Vec<u8> = admin
        .query_one("SELECT sealed_private FROM palisade.signing_keys WHERE purpose = 'audit'", &[])
        .await
        .unwrap()
        .get(0);
    crate::mfa::assert_instance_envelope(&app, &sealed, "the audit signing key").await;
}

#[tokio::test]
async fn the_list_filters_and_pages_and_the_export_streams_every_event_once() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 5).await;
    let events = event_count(&app, &org).await;
    let path = format!("/api/v1/orgs/{org}/audit-events");
    let created = app.get(&format!("{path}?action=record.created"), Some(&owner)).await;
    assert_eq!(created.body["items"].as_array().unwrap().len(), 5);
    let mut seen = 0;
    let mut page = app.get(&format!("{path}?limit=4"), Some(&owner)).await;
    loop {
        seen += page.body["items"].as_array().unwrap().len() as i64;
        match page.body["next_cursor"].as_str() {
            Some(c) => page = app.get(&format!("{path}?limit=4&cursor={c}"), Some(&owner)).await,
            None => break,
        }
    }
    assert_eq!(seen, events);
    for (query, parameter) in [
        ("from=yesterday", "from"),
        ("actor=org_x", "actor"),
        ("limit=0", "limit"),
        ("cursor=abc", "cursor"),
        ("drop=1", "drop"),
    ] {
        let answer = app.get(&format!("{path}?{query}"), Some(&owner)).await;
        answer.assert_problem(400, "invalid-query");
        assert_eq!(answer.body["errors"][0]["pointer"], parameter);
    }

    let jsonl = app.get(&format!("{path}/export?format=jsonl"), Some(&owner)).await;
    assert_eq!(jsonl.status, 200, "{}", jsonl.text);
    assert_eq!(jsonl.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = jsonl.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as i64, events + 1, "the export.requested event is written before the export reads");
    assert_eq!(lines[0]["action"], "export.requested");
    let csv = app.get(&format!("{path}/export?format=csv&action=record.created"), Some(&owner)).await;
    assert_eq!(csv.status, 200);
    let mut rows = csv.text.lines();
    assert!(rows.next().unwrap().starts_with("id,seq,occurred_at,actor_kind"));
    assert_eq!(rows.count(), 5);
    let exports: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'export.requested'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(exports, 2);
    app.get(&format!("{path}/export?format=xml"), Some(&owner)).await.assert_problem(400, "invalid-query");
    let exports_after: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'export.requested'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(exports_after, 2, "a refused export writes nothing");
    // An export needs a recent sign-in.
    app.clock.advance(time::Duration::minutes(11));
    app.get(&format!("{path}/export?format=jsonl"), Some(&owner)).await.assert_problem(403, "step-up-required");
}

#[tokio::test]
async fn audit_routes_refuse_strangers_the_unauthenticated_and_roles_without_audit_permissions() {
    let app = TestApp::spawn().await;
    let (_owner, org) = busy_org(&app, 1).await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Other").await;
    let (member, _) = member_with_role(&app, &org, "member@example.com", "member").await;
    let (manager, _) = member_with_role(&app, &org, "manager@example.com", "manager").await;
    let before = app.snapshot().await;
    for path in [
        "audit-events",
        "audit-events/verify",
        "audit-events/export?format=jsonl",
        "audit-checkpoints",
        "audit-checkpoints/latest",
    ] {
        let url = format!("/api/v1/orgs/{org}/{path}");
        app.get(&url, None).await.assert_problem(401, "unauthenticated");
        app.get(&url, Some(&stranger)).await.assert_problem(404, "not-found");
        app.get(&url, Some(&member)).await.assert_problem(403, "forbidden");
    }
    // Managers read the log but cannot export it.
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}/audit-events"), Some(&manager)).await.status, 200);
    app.get(&format!("/api/v1/orgs/{org}/audit-events/export?format=csv"), Some(&manager))
        .await
        .assert_problem(403, "forbidden");
    let after = app.snapshot().await;
    let tenant_tables_except_chain = |s: &Vec<(String, i64, String)>| -> Vec<(String, i64, String)> {
        s.iter().filter(|(t, ..)| !t.starts_with("audit_chain") && t != "audit_events").cloned().collect()
    };
    assert_eq!(tenant_tables_except_chain(&after), tenant_tables_except_chain(&before));
}

/// What an attacker with full database access does to hide a change: recompute every chain hash
/// with the server's own function, move the head, and delete the stored checkpoints.
pub async fn rehash_history(admin: &tokio_postgres::Client, org: uuid::Uuid) {
    admin
        .batch_execute(&format!(
            "DO $$ DECLARE c record; prev bytea := '\\x{zero}'; h bytea; BEGIN
               FOR c IN SELECT ch.seq, e FROM palisade.audit_chain ch JOIN palisade.audit_events e ON e.id = ch.event_id
                         WHERE ch.tenant_id = '{org}' ORDER BY ch.seq LOOP
                 h := palisade.audit_hash(c.seq, prev, c.e);
                 UPDATE palisade.audit_chain SET hash = h WHERE tenant_id = '{org}' AND seq = c.seq;
                 prev := h;
               END LOOP;
               UPDATE palisade.audit_chain_heads SET hash = prev WHERE tenant_id = '{org}';
               DELETE FROM palisade.audit_checkpoints WHERE tenant_id = '{org}';
             END $$;",
            zero = "00".repeat(32)
        ))
        .await
        .unwrap();
}
