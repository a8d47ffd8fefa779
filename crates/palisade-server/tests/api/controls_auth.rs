//! `palisade controls check` for tokens and brute-force protection: A3 and A4 pass against the
//! real server (A4 by locking a canary address there), and fail when each is broken.

use palisade_server::config::Config;
use palisade_server::controls::Status;
use palisade_server::controls_auth::{check_a3, check_a4};
use palisade_testkit::TestApp;

async fn counted_addresses(app: &TestApp) -> i64 {
    app.admin().await.query_one("SELECT count(*) FROM palisade.login_attempts", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a3_and_a4_pass_against_the_real_server_and_the_canary_leaves_no_count() {
    let app = TestApp::spawn().await;
    let (runtime, admin) = (app.runtime().await, app.admin().await);
    let config = Config::default();

    let a3 = check_a3(&runtime, Some(&app.base_url), &config).await;
    assert_eq!(a3.status, Status::Pass, "{a3:?}");
    assert!(a3.evidence.contains("1 Ed25519 public key(s)"), "{a3:?}");

    let before = counted_addresses(&app).await;
    let a4 = check_a4(&runtime, Some(&admin), Some(&app.base_url), &config).await;
    assert_eq!(a4.status, Status::Pass, "{a4:?}");
    assert!(a4.evidence.contains("6 refused sign-ins for a canary address locked it for 15 min"), "{a4:?}");
    assert_eq!(counted_addresses(&app).await, before, "the canary's count is removed");

    // Without a server or the operator's connection the live lock is named as not run.
    let offline = check_a4(&runtime, None, None, &config).await;
    assert_eq!(offline.status, Status::Pass, "{offline:?}");
    assert!(offline.evidence.contains("the live lock needs --url"), "{offline:?}");
}

#[tokio::test]
async fn a3_fails_for_long_lived_tokens_a_readable_token_table_or_an_invoker_rotation() {
    let app = TestApp::spawn().await;
    let config = Config { access_token_minutes: 60, refresh_lifetime_days: 90, ..Config::default() };
    let failed = check_a3(&app.runtime().await, None, &config).await;
    assert_eq!(failed.status, Status::Fail);
    assert!(failed.evidence.contains("access tokens live 60 minutes"), "{failed:?}");
    assert!(failed.evidence.contains("refresh-token families live 90 days"), "{failed:?}");

    let admin = app.admin().await;
    admin
        .batch_execute(
            "GRANT SELECT (token_hash) ON palisade.refresh_tokens TO palisade_app;
             ALTER FUNCTION palisade.rotate_refresh(bytea, bytea, timestamptz, uuid, inet, text, text) SECURITY INVOKER",
        )
        .await
        .unwrap();
    let failed = check_a3(&app.runtime().await, None, &Config::default()).await;
    assert_eq!(failed.status, Status::Fail);
    assert!(failed.evidence.contains("the runtime role holds SELECT on refresh_tokens"), "{failed:?}");
    assert!(failed.evidence.contains("is not SECURITY DEFINER"), "{failed:?}");
}

#[tokio::test]
async fn a3_fails_when_the_runtime_role_could_open_or_prove_a_session_itself() {
    let app = TestApp::spawn().await;
    let passing = check_a3(&app.runtime().await, None, &Config::default()).await;
    assert_eq!(passing.status, Status::Pass, "{passing:?}");
    assert!(passing.evidence.contains("sessions opened only by the sign-in login"), "{passing:?}");
    let admin = app.admin().await;
    for (grant, named) in [
        ("GRANT INSERT ON palisade.sessions TO palisade_app", "the runtime role holds INSERT on sessions"),
        ("GRANT INSERT (token_hash) ON palisade.refresh_tokens TO palisade_app", "holds INSERT on refresh_tokens"),
        ("GRANT SELECT ON palisade.bearer_key TO palisade_app", "the runtime role can read the bearer key"),
    ] {
        admin.batch_execute(grant).await.unwrap();
        let failed = check_a3(&app.runtime().await, None, &Config::default()).await;
        assert_eq!(failed.status, Status::Fail, "{grant}");
        assert!(failed.evidence.contains(named), "{grant}: {failed:?}");
        admin.batch_execute(&grant.replacen("GRANT", "REVOKE", 1).replace(" TO ", " FROM ")).await.unwrap();
    }
    assert_eq!(check_a3(&app.runtime().await, None, &Config::default()).await.status, Status::Pass);

    // A login in the sign-in group could open sessions. (Roles are the cluster's, shared by
    // every test: a login of this test's own, never palisade_app.)
    let probe = format!("a3_{}", app.db.name);
    admin
        .batch_execute(&format!("CREATE ROLE {probe} LOGIN PASSWORD 'a3-probe-pw'; GRANT palisade_signin TO {probe}"))
        .await
        .unwrap();
    let member: tokio_postgres::Config = app.db.dsn(&probe, "a3-probe-pw").parse().unwrap();
    let member = palisade_server::database::connect(&member).await.unwrap();
    let failed = check_a3(&member, None, &Config::default()).await;
    drop(member);
    admin.batch_execute(&format!("DROP ROLE {probe}")).await.unwrap();
    assert_eq!(failed.status, Status::Fail);
    assert!(failed.evidence.contains("the runtime role is a member of palisade_signin"), "{failed:?}");
}

#[tokio::test]
async fn a4_fails_for_a_lax_policy_a_writable_counter_or_a_server_that_locks_for_less() {
    let app = TestApp::spawn().await;
    let lax = Config { lockout_threshold: 10, lockout_minutes: 5, ..Config::default() };
    let failed = check_a4(&app.runtime().await, None, None, &lax).await;
    assert_eq!(failed.status, Status::Fail);
    assert!(failed.evidence.contains("accounts lock after 10 failures"), "{failed:?}");
    assert!(failed.evidence.contains("a lock lasts 5 minutes"), "{failed:?}");

    // The server locks for 15 minutes; an install that promises 30 must see it fall short.
    let promised = Config { lockout_minutes: 30, ..Config::default() };
    let admin = app.admin().await;
    let short = check_a4(&app.runtime().await, Some(&admin), Some(&app.base_url), &promised).await;
    assert_eq!(short.status, Status::Fail);
    assert!(short.evidence.contains("locked a canary address for"), "{short:?}");
    assert!(short.evidence.contains("not 30 min"), "{short:?}");

    // A laxer server than the catalog's six is not flooded to find its threshold: six refusals
    // that do not lock fail the check.
    let refusals = || async {
        let admin = app.admin().await;
        let row = admin
            .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'user.login_failed'", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    let before = refusals().await;
    let lax_server = Config { lockout_threshold: 50, ..Config::default() };
    let unlocked = check_a4(&app.runtime().await, Some(&admin), Some(&app.base_url), &lax_server).await;
    assert_eq!(unlocked.status, Status::Fail);
    assert!(unlocked.evidence.contains("accounts lock after 50 failures"), "{unlocked:?}");
    assert_eq!(refusals().await - before, 6, "six sign-ins, not fifty");

    admin.batch_execute("GRANT UPDATE ON palisade.login_attempts TO palisade_app").await.unwrap();
    let failed = check_a4(&app.runtime().await, None, None, &Config::default()).await;
    assert_eq!(failed.status, Status::Fail);
    assert!(failed.evidence.contains("the runtime role holds UPDATE on login_attempts"), "{failed:?}");
}
