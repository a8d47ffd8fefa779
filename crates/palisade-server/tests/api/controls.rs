//! `palisade controls check`: each check passes on a healthy install and fails when its control
//! is broken.

use palisade_server::controls::{self, Status};
use palisade_testkit::TestApp;

async fn connect_as(app: &TestApp, role: &str, password: &str) -> tokio_postgres::Client {
    let config: tokio_postgres::Config = app.db.dsn(role, password).parse().unwrap();
    palisade_server::database::connect(&config).await.unwrap()
}

/// A login role of this test's own (roles are cluster-wide; names must not collide).
async fn make_role(app: &TestApp, attributes: &str) -> String {
    let role = format!("r_{}", app.db.name);
    let admin = app.admin().await;
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' {attributes}; GRANT CONNECT ON DATABASE {} TO {role}; GRANT USAGE ON SCHEMA palisade TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA palisade TO {role}; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA palisade TO {role}", app.db.name)).await.unwrap();
    role
}

#[tokio::test]
async fn a_healthy_install_passes_t1_t2_and_p2() {
    let app = TestApp::spawn().await;
    app.owner_of("a@example.com", "Org A").await;
    let admin = app.admin().await;
    let config = palisade_server::config::Config::default();
    let (runtime, keys) = (app.runtime().await, app.key_jobs().await);
    let connections = controls::CheckConnections { runtime: &runtime, admin: Some(&admin), keys: Some(&keys) };
    let results = controls::run_all(connections, None, &config).await;
    let by_id = |id: &str| results.iter().find(|r| r.id == id).unwrap().clone();
    assert_eq!(by_id("T1").status, Status::Pass, "{:?}", by_id("T1"));
    assert_eq!(by_id("T2").status, Status::Pass, "{:?}", by_id("T2"));
    assert_eq!(by_id("A1").status, Status::Pass, "{:?}", by_id("A1"));
    assert_eq!(by_id("L1").status, Status::Pass, "{:?}", by_id("L1"));
    for id in ["T3", "Z1", "L4", "A3", "A4"] {
        assert_eq!(by_id(id).status, Status::Pass, "{:?}", by_id(id));
    }
    // The owner's sign-up and sign-in belong to no organization: they are the instance chain's.
    assert!(
        by_id("L4")
            .evidence
            .starts_with("1 organization chain(s) and the instance chain (sign-ups, sign-ins, lockouts) verify"),
        "{:?}",
        by_id("L4")
    );
    assert_eq!(by_id("P2").status, Status::Skip);
    assert_eq!(by_id("P1").status, Status::Pass, "{:?}", by_id("P1"));
    for id in ["E1", "P4"] {
        assert_eq!(by_id(id).status, Status::Skip, "{id} needs --url");
    }
    let with_url = controls::check_p2(Some(&app.base_url)).await;
    assert_eq!(with_url.status, Status::Pass, "{with_url:?}");
}

#[tokio::test]
async fn t1_fails_when_rls_is_not_forced_disabled_or_without_policy() {
    let breakages = [
        ("ALTER TABLE palisade.orgs NO FORCE ROW LEVEL SECURITY", "orgs: row-level security is not forced"),
        (
            "ALTER TABLE palisade.memberships DISABLE ROW LEVEL SECURITY",
            "memberships: row-level security is not enabled",
        ),
        ("DROP POLICY tenant_isolation ON palisade.audit_events", "audit_events: no policy"),
        (
            "CREATE TABLE palisade.notes (tenant_id uuid, body text); GRANT SELECT ON palisade.notes TO palisade_app",
            "notes: row-level security is not enabled",
        ),
        ("CREATE TABLE palisade.stray (body text)", "stray has no tenant_id"),
    ];
    for (sql, expected) in breakages {
        let app = TestApp::spawn().await;
        app.admin().await.batch_execute(sql).await.unwrap();
        let result = controls::check_t1(&app.runtime().await).await;
        assert_eq!(result.status, Status::Fail, "{sql}: {result:?}");
        assert!(result.evidence.contains(expected), "{sql}: {}", result.evidence);
    }
}

#[tokio::test]
async fn t1_fails_when_rows_leak_without_a_tenant() {
    let app = TestApp::spawn().await;
    app.owner_of("a@example.com", "Org A").await;
    app.admin().await.batch_execute("CREATE POLICY leak ON palisade.orgs FOR SELECT USING (true)").await.unwrap();
    let result = controls::check_t1(&app.runtime().await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("orgs: 1 row(s) visible with no tenant set"), "{}", result.evidence);
}

#[tokio::test]
async fn t2_fails_for_a_bypassrls_role() {
    let app = TestApp::spawn().await;
    let role = make_role(&app, "BYPASSRLS").await;
    let result = controls::check_t2(&connect_as(&app, &role, &format!("pw-{role}")).await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("has BYPASSRLS"), "{}", result.evidence);
}

#[tokio::test]
async fn t2_fails_for_a_role_that_owns_a_table() {
    let app = TestApp::spawn().await;
    let role = make_role(&app, "").await;
    app.admin().await.batch_execute(&format!("ALTER TABLE palisade.orgs OWNER TO {role}")).await.unwrap();
    let result = controls::check_t2(&connect_as(&app, &role, &format!("pw-{role}")).await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("owns table orgs"), "{}", result.evidence);
}

#[tokio::test]
async fn t2_fails_when_enter_tenant_stops_checking() {
    let app = TestApp::spawn().await;
    app.admin()
        .await
        .batch_execute(
            "CREATE OR REPLACE FUNCTION palisade.enter_tenant(p_token_hash bytea, p_now timestamptz, p_org uuid) RETURNS text
             LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN PERFORM set_config('app.tenant_id', p_org::text, true); RETURN 'owner'; END $$",
        )
        .await
        .unwrap();
    let result = controls::check_t2(&app.runtime().await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("accepted an unknown session"), "{}", result.evidence);
}

#[tokio::test]
async fn p2_fails_against_a_server_that_accepts_anything() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lax = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, lax).await.unwrap() });
    let result = controls::check_p2(Some(&format!("http://{addr}"))).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("expected 400 /problems/invalid-json"), "{}", result.evidence);
}

#[tokio::test]
async fn a1_fails_when_a_password_is_stored_in_a_weak_form() {
    let app = TestApp::spawn().await;
    app.user("a@example.com").await;
    assert_eq!(controls::check_a1(&app.runtime().await).await.status, Status::Pass);
    app.admin().await.batch_execute("UPDATE palisade.users SET password_hash = md5('hunter2')").await.unwrap();
    let result = controls::check_a1(&app.runtime().await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(
        result.evidence.contains("1 account(s) with a hash that is neither argon2id nor bcrypt"),
        "{}",
        result.evidence
    );
}

#[tokio::test]
async fn l1_fails_when_the_server_may_rewrite_the_audit_log() {
    for grant in [
        "GRANT UPDATE ON palisade.audit_events TO palisade_app",
        "GRANT DELETE ON palisade.audit_events TO palisade_app",
        "GRANT UPDATE (details) ON palisade.audit_events TO palisade_app",
    ] {
        let app = TestApp::spawn().await;
        app.admin().await.batch_execute(grant).await.unwrap();
        let result = controls::check_l1(&app.runtime().await).await;
        assert_eq!(result.status, Status::Fail, "{grant}");
    }
    let app = TestApp::spawn().await;
    app.admin().await.batch_execute("REVOKE INSERT ON palisade.audit_events FROM palisade_app").await.unwrap();
    let result = controls::check_l1(&app.runtime().await).await;
    assert_eq!(result.status, Status::Fail);
    assert!(result.evidence.contains("cannot write audit events"));
}

#[tokio::test]
async fn t3_fails_when_the_record_scope_policy_is_gone_or_widened() {
    use palisade_server::controls_data::check_t3;
    for (sql, expected) in [
        ("DROP POLICY record_scope ON palisade.records", "no RESTRICTIVE policy"),
        ("CREATE POLICY peek ON palisade.records FOR SELECT USING (true)", "permissive policy peek widens access"),
        (
            "DROP POLICY record_scope ON palisade.records; CREATE POLICY record_scope ON palisade.records AS RESTRICTIVE FOR SELECT USING (palisade.setting('app.record_scope', true) = 'all' OR created_by IS NOT NULL OR assignees IS NOT NULL)",
            "no RESTRICTIVE policy",
        ),
        ("ALTER TABLE palisade.records NO FORCE ROW LEVEL SECURITY", "not enabled and forced"),
    ] {
        let app = TestApp::spawn().await;
        assert_eq!(check_t3(&app.runtime().await).await.status, Status::Pass);
        app.admin().await.batch_execute(sql).await.unwrap();
        let result = check_t3(&app.runtime().await).await;
        assert_eq!(result.status, Status::Fail, "{sql}: {result:?}");
        assert!(result.evidence.contains(expected), "{sql}: {}", result.evidence);
    }
}

#[tokio::test]
async fn z1_fails_when_the_database_matrix_drifts_or_the_server_may_change_it() {
    use palisade_server::controls_data::check_z1;
    for (sql, expected) in [
        (
            "INSERT INTO palisade.role_permissions VALUES ('contractor', 'records.read_all')",
            "the database grants records.read_all to contractor",
        ),
        (
            "DELETE FROM palisade.role_permissions WHERE role = 'owner' AND permission = 'audit.read'",
            "grants audit.read to owner but the database does not",
        ),
        ("GRANT INSERT ON palisade.role_permissions TO palisade_app", "may change the permission matrix"),
    ] {
        let app = TestApp::spawn().await;
        assert_eq!(check_z1(&app.runtime().await).await.status, Status::Pass);
        app.admin().await.batch_execute(sql).await.unwrap();
        let result = check_z1(&app.runtime().await).await;
        assert_eq!(result.status, Status::Fail, "{sql}: {result:?}");
        assert!(result.evidence.contains(expected), "{sql}: {}", result.evidence);
    }
}

#[tokio::test]
async fn l4_fails_when_an_event_is_altered_and_l1_when_the_server_may_write_the_chain() {
    use palisade_server::controls_data::check_l4;
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("a@example.com", "Org A").await;
    let admin = app.admin().await;
    assert_eq!(check_l4(Some(&admin)).await.status, Status::Pass);
    admin
        .batch_execute("UPDATE palisade.audit_events SET action = 'org.renamed' WHERE action = 'org.created'")
        .await
        .unwrap();
    let result = check_l4(Some(&admin)).await;
    assert_eq!(result.status, Status::Fail, "{result:?}");
    assert!(result.evidence.starts_with(&format!("{org}: broken at position")), "{}", result.evidence);
    assert_eq!(check_l4(None).await.status, Status::Skip);

    admin.batch_execute("GRANT INSERT ON palisade.audit_chain TO palisade_app").await.unwrap();
    let l1 = controls::check_l1(&app.runtime().await).await;
    assert_eq!(l1.status, Status::Fail);
    assert!(l1.evidence.contains("may write the audit chain directly"), "{}", l1.evidence);
}
