//! The audit export: every event once, newest first, from one snapshot; a revoked session stops
//! it; a client that leaves mid-way leaves no transaction open and no connection spoiled.

use std::time::Duration;

use serde_json::{Value, json};

use crate::audit::{busy_org, event_count, tenant, verify};
use palisade_testkit::TestApp;

#[tokio::test]
async fn an_export_of_several_batches_has_every_event_once_newest_first_and_details_intact() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 1).await;
    // 25,000 more events: the export takes 10,000 per batch from its snapshot, so this crosses
    // two batch boundaries (and each batch is encoded while the next is read).
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, details)
             SELECT gen_random_uuid(), $1, now() - g * interval '1 second', 'user', 'record.updated', 'success',
                    jsonb_build_object('n', g, 'note', 'line \"' || g || '\"\nnext')
             FROM generate_series(1, 25000) g",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    // Sealed before the export (the sequencer takes 10,000 a call).
    app.admin().await.execute("SELECT palisade.seal_audit_events(100000)", &[]).await.unwrap();
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);
    let events = event_count(&app, &org).await;
    let path = format!("/api/v1/orgs/{org}/audit-events/export");
    let jsonl = app.get(&format!("{path}?format=jsonl"), Some(&owner)).await;
    assert_eq!(jsonl.status, 200);
    let lines: Vec<Value> = jsonl.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as i64, events + 1, "every event once, and the export.requested event");
    let ids: std::collections::HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), lines.len(), "no event twice");
    let times: Vec<&str> = lines.iter().map(|l| l["occurred_at"].as_str().unwrap()).collect();
    let parsed: Vec<time::OffsetDateTime> = times
        .iter()
        .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap())
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let updated: Vec<&Value> = lines.iter().filter(|l| l["action"] == "record.updated").collect();
    assert_eq!(updated.len(), 25_000);
    assert!(updated.iter().all(|l| l["seq"].is_i64()), "sealed events carry their position");
    let oldest = updated.last().unwrap();
    assert_eq!(oldest["details"], json!({"n": 25000, "note": "line \"25000\"\nnext"}));

    let csv = app.get(&format!("{path}?format=csv&action=record.updated"), Some(&owner)).await;
    assert_eq!(csv.status, 200);
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let details: Vec<Value> =
        reader.records().map(|r| serde_json::from_str(r.unwrap().get(12).unwrap()).unwrap()).collect();
    assert_eq!(details.len(), 25_000, "one header, then every event once");
    assert_eq!(details[0], json!({"n": 1, "note": "line \"1\"\nnext"}));
}

/// `n` more events for `org`, straight into the table (small details, one statement).
async fn many_events(app: &TestApp, org: &str, n: i64) {
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, details)
             SELECT gen_random_uuid(), $1, now() - g * interval '1 millisecond', 'user', 'record.updated', 'success',
                    jsonb_build_object('n', g)
             FROM generate_series(1, $2::bigint) g",
            &[&tenant(org), &n],
        )
        .await
        .unwrap();
}

/// The subject of the export tests below: an organization with `n` more events than its own,
/// its owner's token, and the URL of its export in `format`.
async fn org_with_events(app: &TestApp, n: i64, format: &str) -> (String, String, String) {
    let (owner, org) = busy_org(app, 1).await;
    many_events(app, &org, n).await;
    let url = app.url(&format!("/api/v1/orgs/{org}/audit-events/export?format={format}"));
    (owner, org, url)
}

/// Backends of this test's database still inside a transaction as the runtime role.
async fn open_runtime_transactions(app: &TestApp) -> i64 {
    app.admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND usename = 'palisade_app' AND xact_start IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_export_stops_when_its_session_is_revoked_mid_way() {
    let app = TestApp::spawn().await;
    // Far more than the export buffers ahead of a client that does not read (two batches in the
    // channel, one encoded, one read ahead, the socket buffers): ~20 batches of 10,000.
    let total: i64 = 200_000;
    let (owner, _, url) = org_with_events(&app, total, "jsonl").await;
    let mut response = app.http.get(&url).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = response.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert_eq!(app.send("POST", "/api/v1/auth/logout", Some(&owner), None).await.status, 204);
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break "complete",
            Err(_) => break "cut off",
        }
    };
    let lines = received.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as i64;
    assert_eq!(ended, "cut off", "the body ends in an error, not as a complete export ({lines} lines)");
    assert!(lines < total / 2, "the export stopped soon after the revocation: {lines} of {total} events sent");
    assert!(lines >= 10_000, "the first batch went out whole: {lines}");
    // Nothing is left holding a transaction.
    for _ in 0..100 {
        if open_runtime_transactions(&app).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_runtime_transactions(&app).await, 0);
}

#[tokio::test]
async fn a_client_that_leaves_mid_export_leaves_no_transaction_open_and_the_pool_sound() {
    let app = TestApp::spawn().await;
    let (owner, org, url) = org_with_events(&app, 200_000, "csv").await;
    for _ in 0..3 {
        let mut response = app.http.get(&url).bearer_auth(&owner).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.chunk().await.unwrap().is_some());
        // While it streams, its snapshot is an open transaction.
        assert!(open_runtime_transactions(&app).await >= 1);
        drop(response);
    }
    let mut open = i64::MAX;
    for _ in 0..100 {
        open = open_runtime_transactions(&app).await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "every abandoned export's transaction was rolled back");
    // Every pooled connection still works: more requests than the pool holds, each a transaction.
    for _ in 0..40 {
        assert_eq!(app.get(&format!("/api/v1/orgs/{org}/audit-events?limit=1"), Some(&owner)).await.status, 200);
    }
    let events = event_count(&app, &org).await;
    let whole = app.get(&format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl"), Some(&owner)).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.text.lines().count() as i64, events + 1, "every event, and this export's own request");
}

/// How many `export.requested` events the organization has.
async fn export_requests(app: &TestApp, org: &str) -> i64 {
    app.admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE tenant_id = $1 AND action = 'export.requested'",
            &[&tenant(org)],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn exports_beyond_the_nodes_slots_are_refused_and_other_requests_keep_their_connections() {
    let app = TestApp::spawn().await;
    let (owner, org, url) = org_with_events(&app, 200_000, "jsonl").await;
    // The test server's pool holds 16 connections: 4 exports may stream at once. These four
    // are not read, so each holds its snapshot (and its slot) until dropped.
    let mut running = Vec::new();
    for _ in 0..4 {
        let response = app.http.get(&url).bearer_auth(&owner).send().await.unwrap();
        assert_eq!(response.status(), 200);
        running.push(response);
    }
    let requested = export_requests(&app, &org).await;
    let refused = app.get(&format!("/api/v1/orgs/{org}/audit-events/export?format=csv"), Some(&owner)).await;
    refused.assert_problem(503, "busy");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.body["detail"].as_str().unwrap().contains("audit exports"), "{}", refused.text);
    assert_eq!(export_requests(&app, &org).await, requested, "a refused export writes nothing");
    // Everything else still finds a connection.
    for _ in 0..20 {
        assert_eq!(app.get(&format!("/api/v1/orgs/{org}/audit-events?limit=1"), Some(&owner)).await.status, 200);
    }
    // A slot comes back once an export ends (here: its client leaves).
    drop(running.pop());
    let mut status = 0;
    for _ in 0..100 {
        let response = app.http.get(&url).bearer_auth(&owner).send().await.unwrap();
        status = response.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the slot of the export whose client left was given back");
}

#[tokio::test]
async fn an_export_whose_client_stops_reading_is_stopped_after_the_stall_limit() {
    use palisade_server::config::{Config, RateLimits};
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        rate_limits: RateLimits::off(),
        audit_export_stall_seconds: 1,
        ..Config::default()
    })
    .await;
    let total: i64 = 200_000;
    let (owner, _, url) = org_with_events(&app, total, "jsonl").await;
    let mut response = app.http.get(&url).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = response.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert!(open_runtime_transactions(&app).await >= 1, "the snapshot is open while it streams");
    // The client keeps the connection but takes nothing: after the limit (1 s here) the server
    // stops the export and its snapshot's transaction ends, with the client still connected.
    let mut open = i64::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = open_runtime_transactions(&app).await;
        if open == 0 {
            break;
        }
    }
    assert_eq!(open, 0, "the stalled export's transaction was ended");
    // What was already buffered arrives, then the body ends short of the whole log.
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break "ended",
            Err(_) => break "cut off",
        }
    };
    let lines = received.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as i64;
    assert!(lines < total, "the export stopped ({ended}) after {lines} of {total} events");
}
