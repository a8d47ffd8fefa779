//! The queries background jobs run on every node, every few hundred milliseconds or seconds (the
//! audit sequencer's sealing and checkpoint search, the key keeper's search for key work), find
//! their work through indexes whatever the planner's statistics say: a walk over a whole table
//! there costs on every pass, on every node, whether or not there is anything to do.

use palisade_testkit::TestApp;

use crate::audit::{busy_org, busy_write, tenant, verify};

/// Runs one pass (`sql` with `params`) in a transaction of its own and reads, before it ends,
/// what it did to `tables`: (table, sequential scans, rows fetched through indexes), by table
/// name. Also used for the per-request functions whose plans matter as much (tokens.rs).
pub(crate) async fn one_pass(
    admin: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    tables: &[&str],
) -> (Vec<tokio_postgres::Row>, Vec<(String, i64, i64)>) {
    admin.batch_execute("BEGIN").await.unwrap();
    let rows = admin.query(sql, params).await.unwrap();
    let reads = admin
        .query(
            "SELECT relname::text, seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
             WHERE schemaname = 'palisade' AND relname = ANY($1) ORDER BY relname",
            &[&tables],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    admin.batch_execute("COMMIT").await.unwrap();
    (rows, reads)
}

fn texts(rows: &[tokio_postgres::Row]) -> Vec<String> {
    rows.iter().map(|row| row.get(0)).collect()
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

    let (rows, reads) =
        one_pass(&admin, "SELECT palisade.seal_audit_events(10000)", &[], &["audit_events", "audit_chain"]).await;
    let sealed: i32 = rows[0].get(0);
    let scans: Vec<(String, i64)> = reads.into_iter().map(|(table, seq_scans, _)| (table, seq_scans)).collect();
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

    let (rows, reads) = one_pass(
        &admin,
        "SELECT tenant_id::text FROM palisade.due_checkpoints(now(), 1000, interval '1 hour', 1000)",
        &[],
        &["audit_chain_heads"],
    )
    .await;
    // The oldest checkpoint first.
    assert_eq!(texts(&rows), ["00000000-0000-7000-8000-00000000000a", "00000000-0000-7000-8000-00000000000b"]);
    let (_, seq_scans, fetched) = reads[0].clone();
    assert_eq!(seq_scans, 0, "no sequential scan");
    assert!(fetched <= 4, "only the due chains' rows are read, not the 5,000 busy ones: {fetched}");
}

#[tokio::test]
async fn organizations_needing_key_work_are_found_without_visiting_the_others() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // 5,000 organizations with a recent active data key, one whose key is past the rotation
    // period, one in the middle of a rotation (a retired key); no statistics. (The keys are
    // rows only: replica mode skips the foreign key to organizations this test does not make.)
    admin
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO palisade.org_data_keys (tenant_id, id, wrapping_key, wrapped, created_at)
             SELECT gen_random_uuid(), gen_random_uuid(), 'org_x.v1', '\\x00', now() - interval '30 days'
             FROM generate_series(1, 5000);
             INSERT INTO palisade.org_data_keys (tenant_id, id, wrapping_key, wrapped, created_at, retired_at) VALUES
               ('00000000-0000-7000-8000-00000000000a', gen_random_uuid(), 'org_x.v1', '\\x00', now() - interval '400 days', NULL),
               ('00000000-0000-7000-8000-00000000000b', gen_random_uuid(), 'org_x.v1', '\\x00', now() - interval '20 days', now()),
               ('00000000-0000-7000-8000-00000000000b', gen_random_uuid(), 'org_x.v2', '\\x00', now(), NULL);
             SET session_replication_role = DEFAULT;
             DELETE FROM pg_statistic WHERE starelid = 'palisade.org_data_keys'::regclass",
        )
        .await
        .unwrap();

    let (rows, reads) = one_pass(
        &admin,
        "SELECT tenant_id::text FROM palisade.key_work_due(now(), interval '365 days', 100)",
        &[],
        &["org_data_keys"],
    )
    .await;
    assert_eq!(texts(&rows), ["00000000-0000-7000-8000-00000000000a", "00000000-0000-7000-8000-00000000000b"]);
    let (_, seq_scans, fetched) = reads[0].clone();
    assert_eq!(seq_scans, 0, "no sequential scan");
    assert!(fetched <= 4, "only the rows of the organizations with work are read, not the 5,000 others: {fetched}");
}

#[tokio::test]
async fn organizations_due_for_shredding_are_found_without_visiting_the_others() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // 5,000 organizations nobody is deleting, one whose grace period has ended, one still in
    // it; no statistics. Before 0035 every pass read the whole table. (Rows only: replica mode
    // skips the foreign key to tenants this test does not make.)
    admin
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO palisade.orgs (tenant_id, name, created_at, updated_at)
             SELECT gen_random_uuid(), 'busy ' || g, now(), now() FROM generate_series(1, 5000) g;
             INSERT INTO palisade.orgs (tenant_id, name, created_at, updated_at, deletion_due_at) VALUES
               ('00000000-0000-7000-8000-00000000000a', 'due', now(), now(), now() - interval '1 hour'),
               ('00000000-0000-7000-8000-00000000000b', 'in its grace period', now(), now(), now() + interval '6 days');
             SET session_replication_role = DEFAULT;
             DELETE FROM pg_statistic WHERE starelid = 'palisade.orgs'::regclass",
        )
        .await
        .unwrap();

    let (rows, reads) =
        one_pass(&admin, "SELECT tenant_id::text FROM palisade.orgs_due_for_shredding(now(), 100)", &[], &["orgs"])
            .await;
    assert_eq!(texts(&rows), ["00000000-0000-7000-8000-00000000000a"]);
    let (_, seq_scans, fetched) = reads[0].clone();
    assert_eq!(seq_scans, 0, "no sequential scan");
    assert!(fetched <= 4, "only the organizations being deleted are read, not the 5,000 others: {fetched}");
}
