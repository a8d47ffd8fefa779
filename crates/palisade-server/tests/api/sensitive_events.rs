//! The audit events of single-record sensitive reads, written in groups (`access_events`): a
//! read shows nothing until its event is committed, each event names its own caller, and one
//! caller's revoked session never decides another caller's read.

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::{create_collection, member_with_role};

const SSN: &str = "078-05-1120-CANARY";

struct Crew {
    app: TestApp,
    owner: String,
    org: String,
    sensitive: String,
    plain: String,
}

async fn crew() -> Crew {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "ssn": {"type": "string", "x-palisade-sensitive": true}}});
    let records = create_collection(&app, &owner, &org, "people", schema).await;
    let mut ids = Vec::new();
    for data in [json!({"name": "Ana", "ssn": SSN}), json!({"name": "Bo"})] {
        let made = app.send("POST", &records, Some(&owner), Some(json!({"data": data}))).await;
        assert_eq!(made.status, 201, "{}", made.text);
        ids.push(format!("{records}/{}", made.body["id"].as_str().unwrap()));
    }
    let plain = ids.pop().unwrap();
    let sensitive = ids.pop().unwrap();
    Crew { app, owner, org, sensitive, plain }
}

impl Crew {
    /// (action, actor id, transaction id) of every sensitive-access event, oldest first.
    async fn access_events(&self) -> Vec<(String, String, String)> {
        let rows = self
            .app
            .admin()
            .await
            .query(
                "SELECT action, actor_id::text, xid::text FROM palisade.audit_events \
                 WHERE action LIKE 'record.sensitive%' ORDER BY occurred_at, id",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
    }
}

fn user_uuid(id: &str) -> String {
    id.parse::<palisade_core::UserId>().unwrap().as_uuid().to_string()
}

#[tokio::test]
async fn a_read_whose_audit_event_cannot_be_written_shows_nothing() {
    let c = crew().await;
    let (member, _) = member_with_role(&c.app, &c.org, "member@example.com", "member").await;
    let admin = c.app.admin().await;
    admin
        .batch_execute(
            "CREATE FUNCTION public.refuse_access_events() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit storage refused the event'; END $$; \
             CREATE TRIGGER refuse_access_events BEFORE INSERT ON palisade.audit_events FOR EACH ROW \
             WHEN (NEW.action LIKE 'record.sensitive%') EXECUTE FUNCTION public.refuse_access_events();",
        )
        .await
        .unwrap();

    for token in [&c.owner, &member] {
        let refused = c.app.get(&c.sensitive, Some(token)).await;
        refused.assert_problem(503, "unavailable");
        assert!(!refused.text.contains(SSN) && !refused.text.contains("Ana"), "{}", refused.text);
        assert!(!refused.text.contains("audit storage refused"), "the cause leaked: {}", refused.text);
    }
    // A record without sensitive fields needs no event.
    assert_eq!(c.app.get(&c.plain, Some(&member)).await.status, 200);
    assert!(c.access_events().await.is_empty());

    admin.batch_execute("DROP TRIGGER refuse_access_events ON palisade.audit_events").await.unwrap();
    let shown = c.app.get(&c.sensitive, Some(&c.owner)).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["data"]["ssn"], SSN);
    assert_eq!(c.access_events().await.len(), 1);
}

#[tokio::test]
async fn concurrent_reads_are_written_in_shared_transactions_each_event_naming_its_own_caller() {
    let c = crew().await;
    let (member, member_id) = member_with_role(&c.app, &c.org, "member@example.com", "member").await;
    let owner_id = c.app.get("/api/v1/me", Some(&c.owner)).await.body["id"].as_str().unwrap().to_owned();

    let reads = (0..60).map(|i| {
        let token = if i % 2 == 0 { &c.owner } else { &member };
        c.app.get(&c.sensitive, Some(token))
    });
    let answers = futures::future::join_all(reads).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "{}", answer.text);
        let shown = answer.body["data"].get("ssn") == Some(&Value::from(SSN));
        assert_eq!(shown, i % 2 == 0, "{}", answer.text);
    }

    let events = c.access_events().await;
    assert_eq!(events.len(), 60);
    let (owner, member) = (user_uuid(&owner_id), user_uuid(&member_id));
    let reads_by = |action: &str, actor: &str| events.iter().filter(|e| e.0 == action && e.1 == actor).count();
    assert_eq!(reads_by("record.sensitive_read", &owner), 30, "{events:?}");
    assert_eq!(reads_by("record.sensitive_denied", &member), 30, "{events:?}");
    let mut transactions: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    transactions.sort_unstable();
    transactions.dedup();
    assert!(
        transactions.len() < events.len(),
        "no two events shared a transaction: {} for {}",
        transactions.len(),
        events.len()
    );

    // Sealed into the chain like any event.
    let verified = c.app.get(&format!("/api/v1/orgs/{}/audit-events/verify", c.org), Some(&c.owner)).await;
    assert_eq!(verified.body["valid"], true, "{}", verified.text);
}

#[tokio::test]
async fn a_caller_signed_out_while_waiting_fails_alone_and_the_others_in_its_group_are_served() {
    let c = crew().await;
    let (holder, holder_id) = member_with_role(&c.app, &c.org, "holder@example.com", "admin").await;
    let (leaving, _) = member_with_role(&c.app, &c.org, "leaving@example.com", "admin").await;
    let (staying, staying_id) = member_with_role(&c.app, &c.org, "staying@example.com", "admin").await;
    // The holder's event takes two seconds to write, so the next reads wait behind it and form
    // one group; the first of that group (whose proof the group's transaction enters with) signs
    // out meanwhile.
    c.app
        .admin()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION public.hold_access_event() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$; \
             CREATE TRIGGER hold_access_event BEFORE INSERT ON palisade.audit_events FOR EACH ROW \
             WHEN (NEW.actor_id = '{}') EXECUTE FUNCTION public.hold_access_event();",
            user_uuid(&holder_id)
        ))
        .await
        .unwrap();

    let held = c.app.get(&c.sensitive, Some(&holder));
    let queued = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let first = c.app.get(&c.sensitive, Some(&leaving));
        let second = async {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            c.app.get(&c.sensitive, Some(&staying)).await
        };
        let sign_out = async {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            assert_eq!(c.app.send("POST", "/api/v1/auth/logout", Some(&leaving), None).await.status, 204);
        };
        let (first, second, ()) = tokio::join!(first, second, sign_out);
        (first, second)
    };
    let (held, (first, second)) = tokio::join!(held, queued);
    assert_eq!(held.status, 200, "{}", held.text);
    first.assert_problem(401, "unauthenticated");
    assert!(!first.text.contains(SSN), "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["data"]["ssn"], SSN);

    let actors: Vec<String> = c.access_events().await.into_iter().map(|e| e.1).collect();
    assert_eq!(actors, [user_uuid(&holder_id), user_uuid(&staying_id)], "the signed-out caller's read left no event");
}

#[tokio::test]
async fn an_api_keys_sensitive_reads_are_audited_as_the_key_beside_a_persons() {
    let c = crew().await;
    let made = c
        .app
        .send(
            "POST",
            &format!("/api/v1/orgs/{}/api-keys", c.org),
            Some(&c.owner),
            Some(json!({"name": "payroll sync", "permissions": ["records.read_all", "records.sensitive_read"]})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let key = made.body["secret"].as_str().unwrap().to_owned();
    let key_uuid = made.body["id"].as_str().unwrap().parse::<palisade_core::ApiKeyId>().unwrap().as_uuid().to_string();
    let owner_id = c.app.get("/api/v1/me", Some(&c.owner)).await.body["id"].as_str().unwrap().to_owned();

    let reads = (0..40).map(|i| c.app.get(&c.sensitive, Some(if i % 2 == 0 { &key } else { &c.owner })));
    for answer in futures::future::join_all(reads).await {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["data"]["ssn"], SSN);
    }
    let events = c.access_events().await;
    assert_eq!(events.len(), 40);
    let by = |actor: &str| events.iter().filter(|e| e.0 == "record.sensitive_read" && e.1 == actor).count();
    assert_eq!(by(&key_uuid), 20, "{events:?}");
    assert_eq!(by(&user_uuid(&owner_id)), 20, "{events:?}");
    let kinds: Vec<String> = c
        .app
        .admin()
        .await
        .query(
            "SELECT DISTINCT actor_kind FROM palisade.audit_events WHERE action = 'record.sensitive_read' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["api_key", "user"]);
}
