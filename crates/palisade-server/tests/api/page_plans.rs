//! Pages of a big organization (its records, its audit events) are read in index order, a page's
//! worth of rows, whatever plan a pooled connection has cached: a generic plan is estimated for
//! no organization in particular, and for the average one on a shared instance (a few rows) the
//! planner's cheapest read was every row of the organization, then a sort (make bench: ~330 ms
//! per page at 20,000 records, where the ordered read takes well under one).

use palisade_testkit::TestApp;
use serde_json::json;

use crate::audit::tenant;

/// What reads of `table` have done since the server started, as PostgreSQL's statistics have them
/// once every connection has reported: (scans through any index or of the whole table, index
/// entries read, rows read by whole-table scans).
async fn reads(admin: &tokio_postgres::Client, table: &str) -> (i64, i64, i64) {
    let row = admin
        .query_one(
            "SELECT coalesce(t.idx_scan, 0) + t.seq_scan,
                    (SELECT coalesce(sum(i.idx_tup_read), 0)::bigint FROM pg_stat_user_indexes i WHERE i.relid = t.relid),
                    t.seq_tup_read
             FROM pg_stat_user_tables t WHERE t.schemaname = 'palisade' AND t.relname = $1",
            &[&table],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Reads of `table` after `before` (index entries, rows of whole-table scans), once the server's
/// connections have reported `scans` more scans: a backend sends its counts when it goes idle, at
/// most once a second, so this waits for them (bounded) rather than for a time.
async fn reads_after(admin: &tokio_postgres::Client, table: &str, before: (i64, i64, i64), scans: i64) -> (i64, i64) {
    for _ in 0..300 {
        let now = reads(admin, table).await;
        if now.0 - before.0 >= scans {
            return (now.1 - before.1, now.2 - before.2);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server's connections never reported {scans} scans of {table}");
}

#[tokio::test]
async fn a_big_organizations_record_pages_read_a_page_of_rows_under_a_generic_plan() {
    const PER_ORG: i64 = 5_000;
    let app = TestApp::spawn_with_generic_plans().await;
    let (owner, _, records) = crate::collections::org_with_work_orders(&app, "owner@example.com").await;
    // Fifteen more organizations of the same owner, each with its collection, all writing at the
    // same time: on disk no organization's records are together. Statistics have not caught up
    // (autovacuum has not analyzed the table yet), as after any burst of growth.
    for i in 1..16 {
        let made = app.send("POST", "/api/v1/orgs", Some(&owner), Some(json!({"name": format!("Crew {i}")}))).await;
        assert_eq!(made.status, 201, "{}", made.text);
        let other = made.body["id"].as_str().unwrap();
        crate::collections::create_collection(&app, &owner, other, "work_orders", crate::collections::work_orders())
            .await;
    }
    let admin = app.admin().await;
    admin.batch_execute("ALTER TABLE palisade.records SET (autovacuum_enabled = false)").await.unwrap();
    admin
        .execute(
            "INSERT INTO palisade.records (tenant_id, id, collection, data, created_by, created_at, updated_at)
             SELECT c.tenant_id, gen_random_uuid(), 'work_orders', jsonb_build_object('title', 'job ' || g, 'status', 'open'),
                    c.created_by, now(), now()
             FROM generate_series(1, $1::bigint) g CROSS JOIN palisade.collections c",
            &[&PER_ORG],
        )
        .await
        .unwrap();
    admin.batch_execute("DELETE FROM pg_statistic WHERE starelid = 'palisade.records'::regclass").await.unwrap();

    let before = reads(&admin, "records").await;
    let mut pages = 0;
    for order in ["", "&sort=-id"] {
        let first = app.get(&format!("{records}?limit=50{order}"), Some(&owner)).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["items"].as_array().unwrap().len(), 50);
        let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
        let next = app.get(&format!("{records}?limit=50{order}&cursor={cursor}"), Some(&owner)).await;
        assert_eq!(next.status, 200, "{}", next.text);
        assert_eq!(next.body["items"].as_array().unwrap().len(), 50);
        assert_ne!(first.body["items"][0]["id"], next.body["items"][0]["id"]);
        pages += 2;
    }
    let (index_entries, whole_table_rows) = reads_after(&admin, "records", before, pages).await;
    // Each page asks for 51 rows (one more, to know whether there is a next page).
    assert_eq!(whole_table_rows, 0, "no page read the table whole");
    assert!(index_entries <= pages * 60, "{pages} pages read {index_entries} index entries of {PER_ORG}");
}

#[tokio::test]
async fn a_big_organizations_audit_pages_read_a_page_of_rows_under_a_generic_plan() {
    const EVENTS: i64 = 20_000;
    let app = TestApp::spawn_with_generic_plans().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let admin = app.admin().await;
    // One busy organization, statistics up to date.
    admin
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome)
             SELECT gen_random_uuid(), $1, now() - g * interval '1 second', 'user', 'record.updated', 'success'
             FROM generate_series(1, $2::bigint) g",
            &[&tenant(&org), &EVENTS],
        )
        .await
        .unwrap();
    admin.batch_execute("ANALYZE palisade.audit_events").await.unwrap();

    let events = format!("/api/v1/orgs/{org}/audit-events?limit=50");
    let before = reads(&admin, "audit_events").await;
    // Four pages, each after the last one's cursor: each reads its own 51 entries, not every
    // newer event again.
    let mut page = app.get(&events, Some(&owner)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.body["items"].as_array().unwrap().len(), 50);
        seen.extend(page.body["items"].as_array().unwrap().iter().map(|e| e["id"].to_string()));
        let cursor = page.body["next_cursor"].as_str().expect("a next page").to_owned();
        page = app.get(&format!("{events}&cursor={cursor}"), Some(&owner)).await;
    }
    seen.extend(page.body["items"].as_array().unwrap().iter().map(|e| e["id"].to_string()));
    assert_eq!(seen.len(), 200, "four pages, no event twice");
    // A time range deep in the past starts there, not at the newest event.
    let to: String = admin
        .query_one(
            "SELECT to_char((now() - interval '10000 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let old = app.get(&format!("{events}&to={to}"), Some(&owner)).await;
    assert_eq!(old.status, 200, "{}", old.text);
    assert_eq!(old.body["items"].as_array().unwrap().len(), 50);
    let (index_entries, whole_table_rows) = reads_after(&admin, "audit_events", before, 5).await;
    assert_eq!(whole_table_rows, 0, "no page read the table whole");
    assert!(index_entries <= 5 * 55, "5 pages read {index_entries} index entries of {EVENTS}");
}
