//! The audit sequencer's background queries (sealing, finding the chains due for a checkpoint)
//! find their work through indexes, whatever the planner's statistics say: they run every 250 ms
//! on every node, so a walk over a whole table there costs on every pass.

use palisade_testkit::TestApp;

use crate::audit::{busy_org, busy_write, tenant, verify};

/// What one transaction did to the audit tables so far: (table, sequential scans, rows fetched
/// through indexes).
async fn table_reads(admin: &tokio_postgres::Client, tables: &[&str]) -> Vec<(String, i64, i64)> {
    admin
        .query(
            "SELECT relname::text, seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
             WHERE schemaname = 'palisade' AND relname = ANY($1) ORDER BY relname",
            &[&tables],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn the_sequencer_finds_its_work_through_the_index_even_without_statistics() {
    let app = TestApp::spawn().await;
    let (owner, org) = busy_org(&app, 1).await;
    let admin = app.admin().await;
    // 20,000 sealed events, then no statistics: a new install, or a table that grew faster than
    // autovacuum analyzes it. Without a fixed plan the planner guessed a third of the table for
    // the pass's xid range and scanned both tables whole, every 250 ms (migration 0031).
    admin
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome)
             SELECT gen_random_uuid(), $1, now(), 'user', 'record.updated', 'success' FROM generate_series(1, 20000)",
            &[&tenant(&org)],
        )
        .await
        .unwrap();
    while app.app.seal_audit().await.unwrap() > 0 {}
    admin
        .batch_execute(
            "DELETE FROM pg_statistic WHERE starelid IN ('palisade.audit_events'::regclass, 'palisade.audit_chain'::regclass)",
        )
        .await
        .unwrap();
    busy_write(&app, &owner, &org).await;

    // A pass in a transaction of its own, whose table counters are readable before it ends.
    admin.batch_execute("BEGIN").await.unwrap();
    let sealed: i32 = admin.query_one("SELECT palisade.seal_audit_events(10000)", &[]).await.unwrap().get(0);
    let scans: Vec<(String, i64)> = table_reads(&admin, &["audit_events", "audit_chain"])
        .await
        .into_iter()
        .map(|(table, seq_scans, _)| (table, seq_scans))
        .collect();
    admin.batch_execute("COMMIT").await.unwrap();
    assert!(sealed > 0, "the new events were sealed");
    assert_eq!(scans, [("audit_chain".to_string(), 0), ("audit_events".to_string(), 0)], "no sequential scan");
    let report = verify(&app, &owner, &org).await;
    assert_eq!(report["valid"], true, "{report}");
}

#[tokio::test]
async fn chains_due_for_a_checkpoint_are_found_without_visiting_the_busy_ones_that_are_not() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // 5,000 organizations wrote a few events in the last hour (not due), one has 1,000 unsigned
    // events, one a checkpoint two hours old; no statistics.
    admin
        .batch_execute(
            "INSERT INTO palisade.audit_chain_heads (tenant_id, seq, hash, checkpointed_seq, checkpointed_at)
             SELECT gen_random_uuid(), 12, decode(repeat('00', 32), 'hex'), 5, now() - interval '10 minutes'
             FROM generate_series(1, 5000);
             INSERT INTO palisade.audit_chain_heads (tenant_id, seq, hash, checkpointed_seq, checkpointed_at) VALUES
               ('00000000-0000-7000-8000-00000000000b', 1005, decode(repeat('00', 32), 'hex'), 5, now()),
               ('00000000-0000-7000-8000-00000000000a', 7, decode(repeat('00', 32), 'hex'), 5, now() - interval '2 hours');
             DELETE FROM pg_statistic WHERE starelid = 'palisade.audit_chain_heads'::regclass",
        )
        .await
        .unwrap();

    admin.batch_execute("BEGIN").await.unwrap();
    let due: Vec<String> = admin
        .query("SELECT tenant_id::text FROM palisade.due_checkpoints(now(), 1000, interval '1 hour', 1000)", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let reads = table_reads(&admin, &["audit_chain_heads"]).await;
    admin.batch_execute("COMMIT").await.unwrap();
    // The oldest checkpoint first.
    assert_eq!(due, ["00000000-0000-7000-8000-00000000000a", "00000000-0000-7000-8000-00000000000b"]);
    let (_, seq_scans, fetched) = reads[0].clone();
    assert_eq!(seq_scans, 0, "no sequential scan");
    assert!(fetched <= 4, "only the due chains' rows are read, not the 5,000 busy ones: {fetched}");
}
