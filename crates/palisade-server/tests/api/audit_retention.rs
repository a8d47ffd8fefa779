//! Audit retention: chains cut under signed truncation checkpoints, legal hold, the checks the
//! database makes on a purge, and a backlog longer than one cut.

use serde_json::json;

use crate::audit::{busy_org, event_count, rehash_history, tenant, verify};
use palisade_testkit::TestApp;

#[tokio::test]
async fn a_retention_backlog_longer_than_one_cut_is_purged_in_steps_and_stops_at_the_first_recent_event() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 1).await;
    app.app.seal_audit().await.unwrap();
    // 100,500 events from 800 days ago, sealed before today's: one cut walks at most 100,000
    // positions, so the purge takes two rounds; the events of today stay.
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, xid)
             SELECT gen_random_uuid(), $1, now() - interval '800 days' + g * interval '1 ms', 'user',
                    'record.updated', 'success', '1'
             FROM generate_series(1, 100500) g",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    // Sealed ahead of the org's own events: renumber so the old ones come first, as they would
    // have been sealed in their time.
    let admin = app.admin().await;
    admin.batch_execute("BEGIN").await.unwrap();
    let t = tenant(&org);
    let before: i64 =
        admin.query_one("SELECT seq FROM palisade.audit_chain_heads WHERE tenant_id = $1", &[&t]).await.unwrap().get(0);
    admin.execute("UPDATE palisade.audit_chain SET seq = seq + 100500 WHERE tenant_id = $1", &[&t]).await.unwrap();
    admin
        .execute(
            "INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash)
             SELECT $1, row_number() OVER (ORDER BY e.occurred_at, e.id), e.id, decode(repeat('00', 32), 'hex')
             FROM palisade.audit_events e WHERE e.tenant_id = $1 AND e.xid = '1'",
            &[&t],
        )
        .await
        .unwrap();
    admin
        .execute("UPDATE palisade.audit_chain_heads SET seq = seq + 100500 WHERE tenant_id = $1", &[&t])
        .await
        .unwrap();
    admin.batch_execute("COMMIT").await.unwrap();
    rehash_history(&admin, t).await;
    // (As autovacuum would after a bulk load: without statistics the plans are guesses.)
    admin.batch_execute("ANALYZE palisade.audit_events; ANALYZE palisade.audit_chain").await.unwrap();
    assert_eq!(verify(&app, &owner, &org).await["valid"], true);

    assert_eq!(app.app.apply_audit_retention().await.unwrap(), 100_500, "every old event, in two cuts");
    assert_eq!(app.app.apply_audit_retention().await.unwrap(), 0, "nothing more is due");
    let report = verify(&app, &owner, &org).await;
    assert_eq!(report["valid"], true, "{report}");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE tenant_id = $1 AND action <> 'audit.purged'",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, before, "today's events stay");
    let purges: i64 = admin
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id = $1 AND action = 'audit.purged'", &[&t])
        .await
        .unwrap()
        .get(0);
    assert_eq!(purges, 2);
}

/// Retention, tested by moving the injected clock: an organization's events from 800 days ago
/// are purged under a signed truncation checkpoint, the rest still verifies, and an
/// organization under legal hold keeps everything.
#[tokio::test]
async fn retention_purges_old_events_under_a_signed_truncation_unless_on_legal_hold() {
    let app = TestApp::spawn().await;
    app.clock.advance(time::Duration::days(-800));
    let (owner, org) = busy_org(&app, 2).await;
    let (keeper, held_org) = app.owner_of("keeper@example.com", "Held").await;
    let hold =
        app.send("PATCH", &format!("/api/v1/orgs/{held_org}"), Some(&keeper), Some(json!({"legal_hold": true}))).await;
    assert_eq!((hold.status, hold.body["legal_hold"].as_bool()), (200, Some(true)), "{}", hold.text);
    app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&owner), Some(json!({"audit_retention_days": 364})))
        .await
        .assert_problem(422, "validation");
    app.app.seal_audit().await.unwrap();
    let old_events = event_count(&app, &org).await;
    let held_events = event_count(&app, &held_org).await;

    // 800 days later (today): the first organization's events are past the 730-day default.
    app.clock.advance(time::Duration::days(800));
    assert_eq!(app.app.apply_audit_retention().await.unwrap(), old_events);
    assert_eq!(app.app.apply_audit_retention().await.unwrap(), 0, "nothing more is due");
    let owner = app.login("owner@example.com").await;
    let report = verify(&app, &owner, &org).await;
    assert_eq!(report["valid"], true, "{report}");
    // What remains: the purge's own event and this sign-in era's events, after the cut.
    let left = app.get(&format!("/api/v1/orgs/{org}/audit-events"), Some(&owner)).await;
    let actions: Vec<&str> =
        left.body["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["audit.purged"]);
    assert_eq!(left.body["items"][0]["details"]["events"].as_i64(), Some(old_events));
    assert_eq!(left.body["items"][0]["seq"].as_i64(), Some(old_events + 1));
    let checkpoints = app.get(&format!("/api/v1/orgs/{org}/audit-checkpoints"), Some(&owner)).await;
    assert_eq!(checkpoints.body["items"][0]["format"], "palisade-audit-truncation-v1");
    // Legal hold: nothing purged.
    assert_eq!(event_count(&app, &held_org).await, held_events);

    // The database refuses a purge dated in the future, and of events still within retention.
    let t = tenant(&org);
    app.app.seal_audit().await.unwrap();
    let head = app
        .admin()
        .await
        .query_one("SELECT seq, hash FROM palisade.audit_chain_heads WHERE tenant_id = $1", &[&t])
        .await
        .unwrap();
    let (seq, hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    let runtime = app.runtime().await;
    for when in ["now() + interval '10 years'", "now()"] {
        let sql = format!("SELECT palisade.purge_audit($1, $2, $3, {when}, 'k', '\\x00')");
        let refused = runtime.query_one(&sql, &[&t, &seq, &hash]).await.unwrap_err();
        assert_eq!(refused.code().map(|c| c.code()), Some("PA403"), "{when}: {refused:?}");
    }
    // Moving the chain's start without a signed truncation checkpoint is found.
    app.admin()
        .await
        .execute("DELETE FROM palisade.audit_checkpoints WHERE tenant_id = $1 AND kind = 'truncation'", &[&t])
        .await
        .unwrap();
    let report = verify(&app, &owner, &org).await;
    assert_eq!(
        (report["valid"].as_bool(), report["first_bad_seq"].as_i64()),
        (Some(false), Some(old_events + 1)),
        "{report}"
    );
}

async fn instance_event_count(app: &TestApp) -> i64 {
    app.admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id IS NULL", &[])
        .await
        .unwrap()
        .get(0)
}

/// The instance chain (sign-ups, sign-ins: no organization) under the instance's retention,
/// which only the operator sets (`palisade migrate` writes `instance_audit_retention_days` over
/// the admin connection): events past it are purged under a signed truncation checkpoint of the
/// instance chain, which still verifies and records the purge; `audit checkpoint` then prints no
/// truncation as a document to keep. The runtime role can neither change the retention nor pass
/// its own, and the database refuses a purge dated ahead of its clock or of events within it.
#[tokio::test]
async fn instance_events_past_the_instance_retention_are_purged_under_a_signed_truncation() {
    let app = TestApp::spawn().await;
    app.clock.advance(time::Duration::days(-800));
    app.user("early@example.com").await;
    app.app.seal_audit().await.unwrap();
    // The chain is cut in its order, up to the first event within retention: date its first
    // event (the token signing key made at start) with the others, as on an install that has
    // run for 800 days.
    let admin = app.admin().await;
    admin
        .batch_execute(
            "UPDATE palisade.audit_events SET occurred_at = occurred_at - interval '800 days'
             WHERE tenant_id IS NULL AND action = 'signing_key.rotated'",
        )
        .await
        .unwrap();
    crate::audit::rehash_history(&admin, uuid::Uuid::nil()).await;
    let old = instance_event_count(&app).await;
    assert!(old >= 3, "the signing key, a sign-up and a sign-in: {old}");
    app.clock.advance(time::Duration::days(800));
    app.login("early@example.com").await;
    app.app.seal_audit().await.unwrap();

    // The runtime role cannot shorten it.
    let runtime = app.runtime().await;
    let refused = runtime.execute("UPDATE palisade.instance_audit SET retention_days = 365", &[]).await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused:?}");
    // Ten years, as the operator set it: nothing is due.
    palisade_store::migrate::set_instance_audit_retention(&admin, 3650).await.unwrap();
    assert_eq!(app.app.apply_audit_retention().await.unwrap(), 0, "within ten years");
    assert!(palisade_store::migrate::set_instance_audit_retention(&admin, 364).await.is_err(), "the floor");
    palisade_store::migrate::set_instance_audit_retention(&admin, 730).await.unwrap();
    // A server configured with a longer retention than the database holds purges nothing.
    let mut keeps_longer = app.app.clone();
    keeps_longer.policy.instance_audit_retention_days = Some(1000);
    assert_eq!(keeps_longer.apply_audit_retention().await.unwrap(), 0, "the server keeps events longer");
    keeps_longer.policy.instance_audit_retention_days = Some(730);

    assert_eq!(keeps_longer.apply_audit_retention().await.unwrap(), old);
    assert_eq!(app.app.apply_audit_retention().await.unwrap(), 0, "nothing more is due");
    app.app.seal_audit().await.unwrap();
    let chain = palisade_store::repo::audit_chain::instance_chain();
    let report = palisade_server::audit_cli::verify_org(&admin, chain, &[]).await.unwrap();
    assert!(report.verdict.valid, "{:?}", report.verdict);
    let actions: Vec<String> = admin
        .query(
            "SELECT e.action FROM palisade.audit_chain c JOIN palisade.audit_events e ON e.id = c.event_id
             WHERE c.tenant_id = $1 ORDER BY c.seq",
            &[&chain.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions.first().map(String::as_str), Some("user.login"), "today's sign-in is kept: {actions:?}");
    assert_eq!(actions.last().map(String::as_str), Some("audit.purged"), "{actions:?}");
    let truncation: (i64, String) = admin
        .query_one(
            "SELECT seq, kind FROM palisade.audit_checkpoints WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&chain.as_uuid()],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(truncation, (old, "truncation".to_owned()));

    // `audit checkpoint` prints head checkpoints only: none yet after the cut.
    let (dsn, admin_dsn) = (app.db.runtime_dsn(), app.db.admin_dsn());
    let checkpoint = || {
        crate::support::command(&[("PALISADE_DATABASE_URL", &dsn), ("PALISADE_DATABASE_ADMIN_URL", &admin_dsn)])
            .args(["audit", "checkpoint", "--instance"])
            .output()
            .unwrap()
    };
    assert_eq!(checkpoint().status.code(), Some(1));
    admin
        .execute(
            "UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '2 hours' WHERE tenant_id = $1",
            &[&chain.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    let printed = checkpoint();
    assert_eq!(printed.status.code(), Some(0));
    let document: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(document["format"], "palisade-audit-checkpoint-v1", "{document}");

    // The database's own checks, whatever the server asks.
    let head = admin
        .query_one("SELECT seq, hash FROM palisade.audit_chain_heads WHERE tenant_id = $1", &[&chain.as_uuid()])
        .await
        .unwrap();
    let (seq, hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    for when in ["now() + interval '10 years'", "now()"] {
        let sql = format!("SELECT palisade.purge_instance_audit($1, $2, {when}, 'k', '\\x00')");
        let refused = runtime.query_one(&sql, &[&seq, &hash]).await.unwrap_err();
        assert_eq!(refused.code().map(|c| c.code()), Some("PA403"), "{when}: {refused:?}");
    }
    let unknown = runtime
        .query_one("SELECT palisade.purge_instance_audit($1, $2, now(), 'k', '\\x00')", &[&seq, &vec![7u8; 32]])
        .await
        .unwrap_err();
    assert_eq!(unknown.code().map(|c| c.code()), Some("PA404"));
}
