//! Tenant isolation in the database itself, as the runtime role, below the API.

use palisade_core::{EventId, OrgId, SystemClock, SystemRandomness};
use palisade_store::catalog;
use palisade_store::repo::audit::{self, Actor, NewEvent, Outcome, RequestMeta};
use palisade_store::{Db, StoreError, Tx};
use palisade_testkit::TestApp;

/// The proof `enter_*` takes: a session token's hash, or (for an access token) its session id.
fn proof(app: &TestApp, token: &str) -> Vec<u8> {
    match token.starts_with("pss_") {
        true => palisade_auth::hash_token(token).0.to_vec(),
        false => app.session_proof(token).to_db(),
    }
}

fn uuid_of(org: &str) -> uuid::Uuid {
    org.parse::<OrgId>().unwrap().as_uuid()
}

/// Every table in the schema that has tenant_id must have forced RLS and a tenant policy, and
/// every other table must be a declared instance table. A future migration that forgets either
/// fails here.
#[tokio::test]
async fn catalog_invariant_every_tenant_table_has_forced_rls() {
    let app = TestApp::spawn().await;
    let tables = catalog::table_facts(&app.runtime().await).await.unwrap();
    let problems: Vec<String> = tables.iter().filter_map(catalog::TableFacts::problem).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let tenant_tables: Vec<&str> = tables.iter().filter(|t| t.has_tenant_id).map(|t| t.name.as_str()).collect();
    assert_eq!(
        tenant_tables,
        [
            "api_keys",
            "audit_chain",
            "audit_chain_heads",
            "audit_checkpoints",
            "audit_events",
            "collection_versions",
            "collections",
            "custom_roles",
            "invitations",
            "memberships",
            "org_data_keys",
            "org_usage",
            "orgs",
            "records",
            "secrets"
        ]
    );
}

#[tokio::test]
async fn runtime_role_sessions_carry_their_limits_and_no_jit() {
    let app = TestApp::spawn().await;
    let row = app
        .runtime()
        .await
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), \
             current_setting('idle_in_transaction_session_timeout'), current_setting('jit')",
            &[],
        )
        .await
        .unwrap();
    let settings: (String, String, String, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
    // JIT compiled each execution of a request's statement once an organization grew large
    // (~200 ms each); requests never run long enough to gain from it.
    assert_eq!(settings, ("15s".into(), "5s".into(), "30s".into(), "off".into()));
}

#[tokio::test]
async fn runtime_role_sees_only_the_entered_tenant_and_cannot_write_into_another() {
    let app = TestApp::spawn().await;
    let (a_token, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (_, b_org) = app.owner_of("b@example.com", "Org B").await;
    let runtime = app.runtime().await;

    // No tenant set: nothing at all is visible.
    for table in ["orgs", "memberships", "audit_events"] {
        let n: i64 = runtime.query_one(&format!("SELECT count(*) FROM palisade.{table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{table} without a tenant");
    }

    runtime.batch_execute("BEGIN").await.unwrap();
    runtime
        .query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof(&app, &a_token), &uuid_of(&a_org)])
        .await
        .unwrap();
    for table in ["orgs", "memberships", "audit_events"] {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1) FROM palisade.{table}"
        );
        let row = runtime.query_one(&sql, &[&uuid_of(&b_org)]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 0, "{table}: B rows visible in A");
        assert!(row.get::<_, i64>(1) >= 1, "{table}: A rows visible in A");
    }
    let err =
        runtime.execute("UPDATE palisade.orgs SET name = 'x' WHERE tenant_id = $1", &[&uuid_of(&b_org)]).await.unwrap();
    assert_eq!(err, 0, "B's row is invisible to UPDATE");
    let insert = runtime
        .execute(
            "INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, action, outcome) VALUES (gen_random_uuid(), $1, now(), 'org.updated', 'success')",
            &[&uuid_of(&b_org)],
        )
        .await;
    assert_eq!(insert.unwrap_err().code().unwrap().code(), "42501", "writing into B is refused");
    runtime.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn enter_functions_raise_inside_postgres() {
    let app = TestApp::spawn().await;
    let (a_token, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (b_token, _) = app.owner_of("b@example.com", "Org B").await;
    let runtime = app.runtime().await;
    let code = |r: Result<tokio_postgres::Row, tokio_postgres::Error>| r.unwrap_err().code().unwrap().code().to_owned();
    let a = uuid_of(&a_org);
    assert_eq!(
        code(runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof(&app, "pss_forged"), &a]).await),
        "PA401"
    );
    assert_eq!(
        code(runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof(&app, &b_token), &a]).await),
        "PA404"
    );
    assert_eq!(
        code(runtime.query_one("SELECT palisade.enter_session($1, now())", &[&proof(&app, "pss_forged")]).await),
        "PA401"
    );
    // A tenant id that exists can never be claimed as new.
    assert_eq!(
        code(runtime.query_one("SELECT palisade.enter_new_tenant($1, now(), $2)", &[&proof(&app, &b_token), &a]).await),
        "23505"
    );
    // The runtime role cannot read session proofs, touch the tenant registry or rewrite the audit log.
    for sql in [
        "SELECT token_hash FROM palisade.sessions",
        "INSERT INTO palisade.tenants VALUES (gen_random_uuid(), now())",
        "UPDATE palisade.audit_events SET action = 'x.y'",
        "DELETE FROM palisade.audit_events",
        "UPDATE palisade.users SET is_instance_admin = true",
    ] {
        let err = runtime.execute(sql, &[]).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{sql}");
    }
    let role: String = runtime
        .query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof(&app, &a_token), &a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "owner");
}

/// A failed check aborts the pipelined transaction before any statement queued behind it runs.
#[tokio::test]
async fn a_failed_tenant_check_aborts_the_statements_queued_behind_it() {
    let app = TestApp::spawn().await;
    let (_, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (b_token, _) = app.owner_of("b@example.com", "Org B").await;
    let db = Db::connect(app.db.runtime_config(), 2).unwrap();
    let before = app.count("audit_events").await;
    let org: OrgId = a_org.parse().unwrap();
    let meta = RequestMeta::default();
    let event = |org| NewEvent {
        id: EventId::new(&SystemClock, &SystemRandomness),
        org: Some(org),
        at: time::OffsetDateTime::now_utc(),
        actor: Actor::SessionUser,
        action: "org.updated",
        target_kind: None,
        target_id: None,
        outcome: Outcome::Success,
        details: serde_json::json!({}),
        meta: &meta,
    };
    let mut tx = Tx::tenant(&app.session_proof(&b_token), time::OffsetDateTime::now_utc(), org);
    audit::record(&mut tx, event(org));
    assert!(matches!(tx.run(&db).await, Err(StoreError::NotFound)));
    let mut tx = Tx::tenant(
        &palisade_core::SessionProof::Cookie(palisade_auth::hash_token("pss_forged")),
        time::OffsetDateTime::now_utc(),
        org,
    );
    audit::record(&mut tx, event(org));
    assert!(matches!(tx.run(&db).await, Err(StoreError::Unauthenticated)));
    assert_eq!(app.count("audit_events").await, before, "nothing queued behind the check ran");
    // The pooled connection is clean afterwards: a good transaction on it works.
    let mut tx = Tx::session(&app.session_proof(&b_token), time::OffsetDateTime::now_utc());
    let me = palisade_store::repo::users::me(&mut tx);
    assert!(tx.run(&db).await.unwrap().get(me).is_ok());
}

/// The `set_config` gap, closed (migration 0024): SQL injected into a runtime connection can set
/// `app.tenant_id` and its siblings, but every policy and permission function reads them through
/// `palisade.setting`, which refuses (PA401) settings that no palisade function sealed in this
/// transaction. Forged from nothing, forged after a genuine entry, or replayed from an earlier
/// transaction: each is refused, and nothing of the other tenant is read or written.
#[tokio::test]
async fn caller_settings_set_by_hand_are_refused_not_believed() {
    let app = TestApp::spawn().await;
    let (a_token, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (_, b_org) = app.owner_of("b@example.com", "Org B").await;
    let (a, b) = (uuid_of(&a_org), uuid_of(&b_org));
    let runtime = app.runtime().await;
    let code = |err: tokio_postgres::Error| err.code().map(|c| c.code().to_owned()).unwrap_or_default();
    let b_text = b.to_string();

    // 1. From nothing: name B's tenant, claim owner and every record.
    runtime.batch_execute("BEGIN").await.unwrap();
    for (name, value) in [("app.tenant_id", b_text.as_str()), ("app.role", "owner"), ("app.record_scope", "all")] {
        runtime.query_one("SELECT set_config($1, $2, true)", &[&name, &value]).await.unwrap();
    }
    // (Tables with rows: a policy's check runs when a row is looked at.)
    for sql in [
        "SELECT count(*) FROM palisade.orgs",
        "SELECT count(*) FROM palisade.memberships",
        "SELECT count(*) FROM palisade.audit_events",
    ] {
        let err = runtime.query_one(sql, &[]).await.unwrap_err();
        assert_eq!(code(err), "PA401", "{sql} with a forged tenant");
        runtime.batch_execute("ROLLBACK; BEGIN").await.unwrap();
        runtime.query_one("SELECT set_config('app.tenant_id', $1, true)", &[&b_text]).await.unwrap();
    }
    runtime.batch_execute("ROLLBACK").await.unwrap();

    // 2. After a genuine entry into A, switch the tenant to B: refused, even A's rows.
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof(&app, &a_token), &a]).await.unwrap();
    let own: i64 = runtime.query_one("SELECT count(*) FROM palisade.orgs", &[]).await.unwrap().get(0);
    assert_eq!(own, 1, "the genuine entry sees its own org");
    let mac: String = runtime.query_one("SELECT current_setting('app.mac')", &[]).await.unwrap().get(0);
    assert_eq!(mac.len(), 64, "an HMAC-SHA-256 seals the settings");
    runtime.query_one("SELECT set_config('app.tenant_id', $1, true)", &[&b_text]).await.unwrap();
    let err = runtime.query_one("SELECT count(*) FROM palisade.orgs", &[]).await.unwrap_err();
    assert_eq!(code(err), "PA401");
    runtime.batch_execute("ROLLBACK").await.unwrap();

    // 3. Replay A's sealed settings, seal included, in a later transaction: refused (the seal
    // names its transaction), so a seal read by injected SQL is worth nothing afterwards.
    runtime.batch_execute("BEGIN").await.unwrap();
    for (name, value) in [("app.mac", mac.as_str()), ("app.tenant_id", &a.to_string())] {
        runtime.query_one("SELECT set_config($1, $2, true)", &[&name, &value]).await.unwrap();
    }
    let err = runtime.query_one("SELECT count(*) FROM palisade.orgs", &[]).await.unwrap_err();
    assert_eq!(code(err), "PA401");
    runtime.batch_execute("ROLLBACK").await.unwrap();

    // 4. The runtime role cannot seal settings itself or read the sealing key.
    for sql in [
        "SELECT palisade.set_app('app.tenant_id', gen_random_uuid()::text, true)",
        "SELECT palisade.settings_mac()",
        "SELECT key FROM palisade.settings_key",
    ] {
        let err = runtime.query_one(sql, &[]).await.unwrap_err();
        assert_eq!(code(err), "42501", "{sql}");
    }

    // 5. Nothing of B was written or changed by any of it.
    let admin = app.admin().await;
    let b_name: String =
        admin.query_one("SELECT name FROM palisade.orgs WHERE tenant_id = $1", &[&b]).await.unwrap().get(0);
    assert_eq!(b_name, "Org B");

    // 6. Without any caller setting (anonymous work) there is nothing to verify and nothing shown.
    let n: i64 = runtime.query_one("SELECT count(*) FROM palisade.orgs", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
}

/// A migration that reads a caller setting directly is caught by the catalog rule (and so by
/// `controls check` T2 and this test): the rule is not only for the migrations we have today.
#[tokio::test]
async fn catalog_invariant_caller_settings_are_read_only_through_the_verifier() {
    let app = TestApp::spawn().await;
    let runtime = app.runtime().await;
    assert_eq!(catalog::caller_settings_problems(&runtime).await.unwrap(), Vec::<String>::new());
    app.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION palisade.peek_tenant() RETURNS text LANGUAGE sql STABLE
               AS $$ SELECT current_setting('app.tenant_id', true) $$;
             CREATE POLICY peek ON palisade.records AS RESTRICTIVE FOR SELECT
               USING (tenant_id::text = current_setting('app.tenant_id', true));
             GRANT EXECUTE ON FUNCTION palisade.set_app(text, text, boolean) TO palisade_app",
        )
        .await
        .unwrap();
    let problems = catalog::caller_settings_problems(&runtime).await.unwrap();
    assert_eq!(
        problems,
        [
            "function peek_tenant reads or writes a caller setting directly",
            "policy peek on records reads a caller setting unverified",
            "role palisade_app can execute palisade.set_app",
        ],
        "{problems:?}"
    );
}
