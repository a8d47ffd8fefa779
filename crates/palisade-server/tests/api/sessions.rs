//! Session review and revocation, per-org inactivity timeouts, and an admin ending a member's
//! sessions for their organization.

use palisade_testkit::TestApp;
use serde_json::json;

async fn add_member(app: &TestApp, email: &str, role: &str) {
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
             SELECT o.tenant_id, u.id, $2, now() FROM palisade.orgs o, palisade.users u WHERE u.email = $1
             ORDER BY o.created_at LIMIT 1",
            &[&email, &role],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn users_list_and_revoke_their_own_sessions() {
    let app = TestApp::spawn().await;
    let laptop = app.user("sam@example.com").await;
    let phone = app.login("sam@example.com").await;
    let tablet = app.login("sam@example.com").await;
    let list = app.get("/api/v1/me/sessions", Some(&laptop)).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(items.iter().all(|s| s["id"].as_str().unwrap().starts_with("ses_") && s["ip"] == "127.0.0.1"));
    assert!(items.iter().all(|s| s["device"] == "palisade-testkit"), "{items:?}");

    let phone_id = app.get("/api/v1/me/sessions", Some(&phone)).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.send("DELETE", &format!("/api/v1/me/sessions/{phone_id}"), Some(&laptop), None).await.status, 204);
    app.get("/api/v1/me", Some(&phone)).await.assert_problem(401, "unauthenticated");
    app.send("DELETE", &format!("/api/v1/me/sessions/{phone_id}"), Some(&laptop), None)
        .await
        .assert_problem(404, "not-found");

    let others = app.send("POST", "/api/v1/me/sessions/revoke-others", Some(&laptop), None).await;
    assert_eq!(others.body, json!({"revoked": 1}));
    app.get("/api/v1/me", Some(&tablet)).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.get("/api/v1/me", Some(&laptop)).await.status, 200, "the current session survives");
    let actions: Vec<String> = app
        .admin()
        .await
        .query("SELECT action FROM palisade.audit_events WHERE action LIKE 'user.session%' ORDER BY occurred_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["user.session_revoked", "user.sessions_revoked"]);
}

#[tokio::test]
async fn another_users_session_ids_are_not_found_and_untouched() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@example.com").await;
    let bob = app.user("bob@example.com").await;
    let bob_session =
        app.get("/api/v1/me/sessions", Some(&bob)).await.body["items"][0]["id"].as_str().unwrap().to_owned();
    let before = app.snapshot().await;
    let answer = app.send("DELETE", &format!("/api/v1/me/sessions/{bob_session}"), Some(&alice), None).await;
    answer.assert_problem(404, "not-found");
    for bad in ["garbage", "org_01h455vb4pex5vsknk084sn02q", "ses_01h455vb4pex5vsknk084sn02q"] {
        app.send("DELETE", &format!("/api/v1/me/sessions/{bad}"), Some(&alice), None)
            .await
            .assert_problem(404, "not-found");
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.get("/api/v1/me", Some(&bob)).await.status, 200);
    let alice_sees: Vec<serde_json::Value> =
        app.get("/api/v1/me/sessions", Some(&alice)).await.body["items"].as_array().unwrap().clone();
    assert_eq!(alice_sees.len(), 1, "only her own session");
    app.get("/api/v1/me/sessions", None).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/me/sessions/revoke-others", None, None).await.assert_problem(401, "unauthenticated");
    app.send("DELETE", &format!("/api/v1/me/sessions/{bob_session}"), None, None)
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn an_org_inactivity_timeout_applies_inside_that_org_only() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("strict@example.com", "Strict Org").await;
    let set =
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(json!({"session_idle_minutes": 5}))).await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["session_idle_minutes"], 5, "{}", set.text);
    app.clock.advance(time::Duration::minutes(4));
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await.status, 200);
    app.clock.advance(time::Duration::minutes(6));
    app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await.assert_problem(401, "unauthenticated");
    // The instance default (30 minutes) still holds outside this organization.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
    let fresh = app.login("strict@example.com").await;
    let back = app
        .send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&fresh), Some(json!({"session_idle_minutes": null})))
        .await;
    assert_eq!(back.body["session_idle_minutes"], serde_json::Value::Null);
    let setting: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'settings.changed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, 2);
}

#[tokio::test]
async fn inactivity_timeout_outside_the_allowed_range_is_refused() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("range@example.com", "Org").await;
    let before = app.snapshot().await;
    for value in [json!(4), json!(1441), json!(-1), json!("10"), json!(2.5)] {
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(json!({"session_idle_minutes": value})))
            .await
            .assert_problem(422, "validation");
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn an_admin_ends_a_members_sessions_for_the_org_only() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Org A").await;
    let member = app.user("member@example.com").await;
    add_member(&app, "member@example.com", "member").await;
    let (_, elsewhere) = {
        let answer = app.send("POST", "/api/v1/orgs", Some(&member), Some(json!({"name": "Member's own"}))).await;
        (member.clone(), answer.body["id"].as_str().unwrap().to_owned())
    };
    let member_id = app.get("/api/v1/me", Some(&member)).await.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.status, 200);

    let path = format!("/api/v1/orgs/{org}/members/{member_id}/revoke-sessions");
    assert_eq!(app.send("POST", &path, Some(&owner), None).await.status, 204);
    app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.get(&format!("/api/v1/orgs/{elsewhere}"), Some(&member)).await.status, 200, "other orgs unaffected");
    app.clock.advance(time::Duration::seconds(1));
    let again = app.login("member@example.com").await;
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&again)).await.status, 200, "a new sign-in works");
}

#[tokio::test]
async fn revoking_sessions_respects_roles_tenants_and_input() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Org A").await;
    let owner_id = app.get("/api/v1/me", Some(&owner)).await.body["id"].as_str().unwrap().to_owned();
    let admin = app.user("admin@example.com").await;
    add_member(&app, "admin@example.com", "admin").await;
    let viewer = app.user("viewer@example.com").await;
    add_member(&app, "viewer@example.com", "viewer").await;
    let viewer_id = app.get("/api/v1/me", Some(&viewer)).await.body["id"].as_str().unwrap().to_owned();
    let (stranger, _) = app.owner_of("stranger@example.com", "Org B").await;
    let before = app.snapshot().await;

    // A viewer may not; an admin may not touch an owner; another tenant gets 404.
    app.send("POST", &format!("/api/v1/orgs/{org}/members/{owner_id}/revoke-sessions"), Some(&viewer), None)
        .await
        .assert_problem(403, "forbidden");
    app.send("POST", &format!("/api/v1/orgs/{org}/members/{owner_id}/revoke-sessions"), Some(&admin), None)
        .await
        .assert_problem(403, "forbidden");
    app.send("POST", &format!("/api/v1/orgs/{org}/members/{viewer_id}/revoke-sessions"), Some(&stranger), None)
        .await
        .assert_problem(404, "not-found");
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/members/usr_01h455vb4pex5vsknk084sn02q/revoke-sessions"),
        Some(&owner),
        None,
    )
    .await
    .assert_problem(404, "not-found");
    app.send("POST", &format!("/api/v1/orgs/{org}/members/garbage/revoke-sessions"), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");
    app.send("POST", &format!("/api/v1/orgs/{org}/members/{viewer_id}/revoke-sessions"), None, None)
        .await
        .assert_problem(401, "unauthenticated");
    let after = app.snapshot().await;
    // Only the two denied attempts were audited; nothing else changed.
    let audit = |s: &Vec<(String, i64, String)>| s.iter().find(|(t, ..)| t == "audit_events").unwrap().1;
    assert_eq!(audit(&after), audit(&before) + 2);
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&owner)).await.status, 200);
    assert_eq!(
        app.send("POST", &format!("/api/v1/orgs/{org}/members/{viewer_id}/revoke-sessions"), Some(&admin), None)
            .await
            .status,
        204
    );
}

/// What SQL injected into a request's connection would try: open a session (with a token of its
/// choosing) for another user, then enter that user's organizations with it. Only the sign-in
/// login may insert sessions or refresh tokens (0036); the runtime role is refused both, and
/// the victim's organizations stay closed to the forged token.
#[tokio::test]
async fn a_request_connection_cannot_open_a_session_only_the_sign_in_login_can() {
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("victim@example.com", "Victim Org").await;
    let org = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    let victim: uuid::Uuid = app
        .admin()
        .await
        .query_one("SELECT id FROM palisade.users WHERE email = 'victim@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    let forged = uuid::Uuid::new_v4();
    let insert_session =
        "INSERT INTO palisade.sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at, idle_timeout)
         VALUES ($1, $2, sha256('forged'::bytea), now(), now(), now() + interval '1 hour', interval '1 hour')";
    let insert_refresh = "INSERT INTO palisade.refresh_tokens (token_hash, session_id, issued_at)
         VALUES (sha256('forged refresh'::bytea), $1, now())";

    let runtime = app.runtime().await;
    for sql in [insert_session, insert_refresh] {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            if sql == insert_session { vec![&forged, &victim] } else { vec![&forged] };
        let refused = runtime.execute(sql, &params).await.unwrap_err();
        assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused}");
    }
    // With no session of its own making, the forged token enters nothing.
    let entered = runtime
        .query_one("SELECT palisade.enter_tenant(sha256('forged'::bytea), now(), $1)", &[&org])
        .await
        .unwrap_err();
    assert!(entered.code().is_some(), "{entered}");
    let sessions = app.count("sessions").await;

    // The sign-in login can (inside a transaction rolled back here: the server uses it only to
    // complete a sign-in whose factors it verified).
    let mut sign_in = palisade_server::database::connect(&app.db.signin_config()).await.unwrap();
    let tx = sign_in.transaction().await.unwrap();
    assert_eq!(tx.execute(insert_session, &[&forged, &victim]).await.unwrap(), 1);
    assert_eq!(tx.execute(insert_refresh, &[&forged]).await.unwrap(), 1);
    tx.rollback().await.unwrap();
    assert_eq!(app.count("sessions").await, sessions, "nothing was kept");
}

/// An access token's session is proven to the database by the session id's MAC under the bearer
/// key (0037), which the runtime role cannot read: SQL injected into a request's connection that
/// learned another member's session id (audit events name sessions) cannot enter as them.
#[tokio::test]
async fn knowing_a_session_id_is_not_enough_to_enter_as_that_session() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("known@example.com", "Known Org").await;
    let org = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    let proof = app.session_proof(&token).to_db();
    assert_eq!(proof.len(), 48, "the session id and its MAC");
    let id = proof[..16].to_vec();
    let mut wrong = proof.clone();
    wrong[47] ^= 1;

    let runtime = app.runtime().await;
    let enter = "SELECT palisade.enter_tenant($1, now(), $2)";
    for forged in [&id, &wrong, &proof[..47].to_vec()] {
        let refused = runtime.query_one(enter, &[forged, &org]).await.unwrap_err();
        assert_eq!(refused.code().map(|c| c.code()), Some("PA401"), "{refused}");
    }
    let unreadable = runtime.query_one("SELECT key FROM palisade.bearer_key", &[]).await.unwrap_err();
    assert_eq!(unreadable.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{unreadable}");
    // The server's proof enters, and the API works with the token as before.
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one(enter, &[&proof, &org]).await.unwrap();
    runtime.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
}

/// Two rotations of the bearer key at once (two operators, or a retried command) both succeed,
/// one after the other, leaving one current key (0039: the second used to fail on the unique
/// index with a bare error).
#[tokio::test]
async fn concurrent_bearer_key_rotations_take_turns() {
    let app = TestApp::spawn().await;
    let first = palisade_server::database::connect(&app.db.signin_config()).await.unwrap();
    let second = palisade_server::database::connect(&app.db.signin_config()).await.unwrap();
    first.batch_execute("BEGIN").await.unwrap();
    first.query_one("SELECT palisade.rotate_bearer_key(60)", &[]).await.unwrap();
    // The second rotation waits for the first transaction, whatever it has done so far.
    let waiting = tokio::spawn(async move { second.query_one("SELECT palisade.rotate_bearer_key(60)", &[]).await });
    let admin = app.admin().await;
    let waits = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
                 AND query LIKE '%rotate_bearer_key%'";
    let mut blocked = 0i64;
    for _ in 0..200 {
        blocked = admin.query_one(waits, &[]).await.unwrap().get(0);
        if blocked > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(blocked, 1, "the second rotation waits");
    first.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().expect("the second rotation succeeds after the first");
    let keys: (i64, i64) = admin
        .query_one("SELECT count(*) FILTER (WHERE retire_after IS NULL), count(*) FROM palisade.bearer_key", &[])
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(keys, (1, 3), "one current key, the two before it retiring");
}
