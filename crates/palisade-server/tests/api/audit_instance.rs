//! The instance chain (0040): the audit events of no organization (sign-ups, sign-ins, failed
//! sign-ins, key rotations) are chained, checkpointed and verified like an organization's, through
//! the operator's commands; the events an install wrote before 0040 are chained after it.

use serde_json::Value;

use crate::support::command;
use palisade_testkit::TestApp;

/// The instance chain (events of no organization: sign-ups, sign-ins, failed sign-ins) through
/// the operator's commands: `audit checkpoint --instance` prints a checkpoint to keep, `audit
/// verify --instance` recomputes the chain, and a changed sign-in event, or a chain rewritten
/// after the kept checkpoint, exits 1.
#[tokio::test]
async fn the_instance_chain_of_sign_ins_is_verified_and_checkpointed_by_the_operator() {
    let app = TestApp::spawn().await;
    app.user("someone@example.com").await;
    let wrong = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"email": "someone@example.com", "password": "not-it-at-all"})),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let admin = app.admin().await;
    let (dsn, admin_dsn) = (app.db.runtime_dsn(), app.db.admin_dsn());
    let audit = |args: &[&str]| {
        command(&[("PALISADE_DATABASE_URL", &dsn), ("PALISADE_DATABASE_ADMIN_URL", &admin_dsn)])
            .arg("audit")
            .args(args)
            .output()
            .unwrap()
    };
    let sound = audit(&["verify", "--instance", "--json"]);
    assert_eq!(sound.status.code(), Some(0), "{}", String::from_utf8_lossy(&sound.stderr));
    let report: Value = serde_json::from_slice(&sound.stdout).unwrap();
    let instance_events: i64 = admin
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(instance_events >= 3, "sign-up, sign-in, failed sign-in: {instance_events}");
    assert_eq!(
        (report["valid"].as_bool(), report["instance"].as_bool(), report["events"].as_i64()),
        (Some(true), Some(true), Some(instance_events)),
        "{report}"
    );
    let chained: i64 = admin
        .query_one(
            "SELECT count(*) FROM palisade.audit_chain c JOIN palisade.audit_events e ON e.id = c.event_id
             WHERE c.tenant_id = '00000000-0000-0000-0000-000000000000' AND e.tenant_id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(chained, instance_events, "every instance event is in the instance chain");

    let none_yet = audit(&["checkpoint", "--instance"]);
    assert_eq!(none_yet.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none_yet.stderr).contains("no signed checkpoint yet"));
    admin
        .batch_execute(
            "UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '2 hours'
             WHERE tenant_id = '00000000-0000-0000-0000-000000000000'",
        )
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    let printed = audit(&["checkpoint", "--instance"]);
    assert_eq!(printed.status.code(), Some(0), "{}", String::from_utf8_lossy(&printed.stderr));
    let kept: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        (kept["format"].as_str(), kept["org"].as_str(), kept["seq"].as_i64()),
        (Some("palisade-audit-checkpoint-v1"), Some("org_00000000000000000000000000"), Some(instance_events)),
        "{kept}"
    );
    let path = std::env::temp_dir().join(format!("palisade-instance-checkpoint-{}.json", app.db.name));
    std::fs::write(&path, &printed.stdout).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let held = audit(&["verify", "--instance", "--checkpoint", &path]);
    assert_eq!(held.status.code(), Some(0), "{}", String::from_utf8_lossy(&held.stdout));
    assert!(String::from_utf8_lossy(&held.stdout).contains("instance chain: chain VALID"));

    // Someone with write access to the table hides where the failed sign-in came from.
    admin
        .batch_execute(
            "UPDATE palisade.audit_events SET ip = '10.6.6.6' WHERE tenant_id IS NULL AND action = 'user.login_failed'",
        )
        .await
        .unwrap();
    let broken = audit(&["verify", "--instance"]);
    assert_eq!(broken.status.code(), Some(1));
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.contains("instance chain: chain BROKEN at position") && text.contains("does not match its hash"),
        "{text}"
    );
    // … and re-hashes the chain after it: consistent on its own, not with the kept checkpoint.
    crate::audit::rehash_history(&admin, uuid::Uuid::nil()).await;
    assert_eq!(audit(&["verify", "--instance"]).status.code(), Some(0));
    let caught = audit(&["verify", "--instance", "--checkpoint", &path]);
    assert_eq!(caught.status.code(), Some(1), "{}", String::from_utf8_lossy(&caught.stdout));
    assert!(String::from_utf8_lossy(&caught.stdout).contains("differs from the checkpoint"));
    std::fs::remove_file(&path).unwrap();

    // A sign-in event slipped in behind the sequencer (its transaction id long passed) is in no
    // chain position: found.
    admin
        .batch_execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, xid)
             VALUES (gen_random_uuid(), NULL, now(), 'user', 'user.login', 'success', '1')",
        )
        .await
        .unwrap();
    let stray = audit(&["verify", "--instance"]);
    assert_eq!(stray.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stray.stdout).contains("1 sealed-period event(s) are in no chain position"));

    // One chain, named once.
    for args in [&["verify"][..], &["verify", "--instance", "--org", "org_01h455vb4pex5vsknk084sn02q"][..]] {
        let refused = audit(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--instance"), "{args:?}");
    }
    // The instance retention has the organizations' floor: a shorter one stops every command.
    for days in ["364", "36501"] {
        let short =
            command(&[("PALISADE_INSTANCE_AUDIT_RETENTION_DAYS", days)]).args(["config", "check"]).output().unwrap();
        assert!(!short.status.success(), "{days}");
        let err = String::from_utf8_lossy(&short.stderr);
        assert!(err.contains("instance_audit_retention_days must be between 365 and 36500 days"), "{err}");
    }
}

/// 0040 chains the instance events an install wrote before it (behind the sequencer's horizon,
/// in no chain) in the order they were written, as the sequencer's role, without moving the
/// horizon: an organization event found in no chain position before stays found. Run here on a
/// database put back in that state (the instance chain's rows and head gone, its events'
/// transaction ids long passed) with the migration's own statements.
#[tokio::test]
async fn instance_events_written_before_0040_are_chained_by_it() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("before@example.com", "Before").await;
    app.user("also@example.com").await;
    app.app.seal_audit().await.unwrap();
    let admin = app.admin().await;
    admin
        .batch_execute(
            "DELETE FROM palisade.audit_chain WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
             DELETE FROM palisade.audit_chain_heads WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
             UPDATE palisade.audit_events SET xid = '3' WHERE tenant_id IS NULL;",
        )
        .await
        .unwrap();
    // An organization event slipped in behind the sequencer: in no chain position.
    admin
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, xid)
             VALUES (gen_random_uuid(), $1, now(), 'user', 'record.deleted', 'success', '2')",
            &[&crate::audit::tenant(&org)],
        )
        .await
        .unwrap();
    let behind: i64 = admin
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE tenant_id IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(behind >= 5, "a key, two sign-ups, verifications, sign-ins: {behind}");
    assert_eq!(app.app.seal_audit().await.unwrap(), 0, "behind the horizon: no pass finds them");

    // The migration's backfill, as `palisade migrate` ran it.
    let migration = include_str!("../../../palisade-store/migrations/0040_instance_chain.sql");
    let start = migration.find("SET LOCAL ROLE palisade_sealer;").expect("the backfill");
    let end = start + migration[start..].find("RESET ROLE;").expect("its end") + "RESET ROLE;".len();
    let backfill = &migration[start..end];
    admin.batch_execute(&format!("BEGIN; {backfill} COMMIT;")).await.unwrap();
    assert_eq!(app.app.seal_audit().await.unwrap(), 0, "chained by the migration, not left to the sequencer");
    let chain = palisade_store::repo::audit_chain::instance_chain();
    let report = palisade_server::audit_cli::verify_org(&admin, chain, &[]).await.unwrap();
    assert_eq!((report.verdict.valid, report.verdict.events), (true, behind), "{:?}", report.verdict);
    let ordered: bool = admin
        .query_one(
            "SELECT bool_and(e.id > prev) FROM (
                 SELECT e.id, lag(e.id) OVER (ORDER BY c.seq) AS prev FROM palisade.audit_chain c
                   JOIN palisade.audit_events e ON e.id = c.event_id
                  WHERE c.tenant_id = '00000000-0000-0000-0000-000000000000') e",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ordered, "in the order written (UUIDv7 ids, one transaction id here)");
    // New sign-ins follow them, sealed by the sequencer.
    app.login("also@example.com").await;
    assert!(app.app.seal_audit().await.unwrap() >= 1);
    let report = palisade_server::audit_cli::verify_org(&admin, chain, &[]).await.unwrap();
    assert_eq!((report.verdict.valid, report.verdict.events > behind), (true, true), "{:?}", report.verdict);
    // The stray organization event is still found.
    let org_report = crate::audit::verify(&app, &owner, &org).await;
    assert_eq!(org_report["valid"], false, "{org_report}");
    assert!(org_report["reason"].as_str().unwrap().contains("1 sealed-period event(s) are in no chain position"));
}

/// Nothing can pose as the instance chain: the database refuses an organization with its nil id
/// (`enter_new_tenant` takes the id the server sends), and `controls check` verifies the instance
/// chain even when its head is gone, so deleting the head (and every position) shows.
#[tokio::test]
async fn no_organization_can_be_the_instance_chain_and_l4_checks_it_without_a_head() {
    let app = TestApp::spawn().await;
    app.owner_of("someone@example.com", "Some Org").await;
    let admin = app.admin().await;
    let refused = admin
        .execute(
            "INSERT INTO palisade.tenants (id, created_at) VALUES ('00000000-0000-0000-0000-000000000000', now())",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("23514"), "{refused:?}");

    let l4 = palisade_server::controls_data::check_l4(Some(&admin)).await;
    assert_eq!(l4.status, palisade_server::controls::Status::Pass, "{l4:?}");
    assert!(l4.evidence.starts_with("1 organization chain(s) and the instance chain"), "{l4:?}");
    admin
        .batch_execute(
            "DELETE FROM palisade.audit_chain WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
             DELETE FROM palisade.audit_chain_heads WHERE tenant_id = '00000000-0000-0000-0000-000000000000';",
        )
        .await
        .unwrap();
    let l4 = palisade_server::controls_data::check_l4(Some(&admin)).await;
    assert_eq!(l4.status, palisade_server::controls::Status::Fail, "{l4:?}");
    let text = format!("{l4:?}");
    // (The check seals first: an event the sequencer had not passed yet may start a new chain;
    // the deleted ones stay in none.)
    assert!(text.contains("instance chain: broken at position") && text.contains("in no chain position"), "{text}");
}
