//! Collections: creation with checked schemas, quotas, schema changes that existing records
//! block (or defaults mend), deletion, and every endpoint's refusals.

use palisade_server::config::Config;
use palisade_testkit::TestApp;
use serde_json::{Value, json};

pub fn work_orders() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "status": {"type": "string", "enum": ["open", "done"]},
            "hours": {"type": "number", "minimum": 0},
            "site": {"type": "string", "x-palisade-pii": true},
            "rate": {"type": "number", "x-palisade-sensitive": true}
        },
        "required": ["title", "status"],
        "additionalProperties": false
    })
}

/// Creates collection `name` in `org` (asserting 201); returns the path of its records.
pub async fn create_collection(app: &TestApp, token: &str, org: &str, name: &str, schema: Value) -> String {
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(token),
            Some(json!({"name": name, "schema": schema})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    format!("/api/v1/orgs/{org}/collections/{name}/records")
}

/// A new owner's organization with the work_orders collection: (owner token, org, records path).
pub async fn org_with_work_orders(app: &TestApp, email: &str) -> (String, String, String) {
    let (owner, org) = app.owner_of(email, "Crew").await;
    let records = create_collection(app, &owner, &org, "work_orders", work_orders()).await;
    (owner, org, records)
}

/// Adds `email` (a fresh verified user) to the organization `org` with `role`: (token, user id).
pub async fn member_with_role(app: &TestApp, org: &str, email: &str, role: &str) -> (String, String) {
    let token = app.user(email).await;
    let org_uuid = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    app.admin()
        .await
        .execute(
            "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
             SELECT $3, u.id, $2, now() FROM palisade.users u WHERE u.email = $1",
            &[&email, &role, &org_uuid],
        )
        .await
        .unwrap();
    let id = app.get("/api/v1/me", Some(&token)).await.body["id"].as_str().unwrap().to_owned();
    (token, id)
}

#[tokio::test]
async fn a_collection_is_created_listed_and_read_by_name() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let created = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(&owner),
            Some(json!({"name": "work_orders", "schema": work_orders()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!((created.body["name"].as_str(), created.body["version"].as_i64()), (Some("work_orders"), Some(1)));
    assert_eq!(created.body["schema"], work_orders());
    let list = app.get(&format!("/api/v1/orgs/{org}/collections"), Some(&owner)).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let one = app.get(&format!("/api/v1/orgs/{org}/collections/work_orders"), Some(&owner)).await;
    assert_eq!(one.status, 200);
    // Same name again: 409, nothing new written.
    let before = app.snapshot().await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/collections"),
        Some(&owner),
        Some(json!({"name": "work_orders", "schema": {"type": "object"}})),
    )
    .await
    .assert_problem(409, "conflict");
    assert_eq!(app.snapshot().await, before);
    let events: Vec<String> = app
        .admin()
        .await
        .query("SELECT action FROM palisade.audit_events WHERE action LIKE 'collection.%'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["collection.created"]);
}

#[tokio::test]
async fn bad_names_and_schemas_are_refused_with_pointers_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let before = app.snapshot().await;
    let path = format!("/api/v1/orgs/{org}/collections");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "Work Orders", "schema": {"type": "object"}}), "/name"),
        (json!({"name": "x".repeat(64), "schema": {"type": "object"}}), "/name"),
        (json!({"name": "ok", "schema": {"type": "string"}}), "/schema/type"),
        (json!({"name": "ok", "schema": [1, 2]}), "/schema"),
        (json!({"name": "ok", "schema": {"type": "object", "$ref": "https://evil.example/s.json"}}), "/schema"),
        (json!({"name": "ok", "schema": {"type": "object", "$ref": "file:///etc/passwd"}}), "/schema"),
        (json!({"name": "ok", "schema": {"type": "object", "properties": {"a": {"type": "text"}}}}), "/schema"),
        (json!({"name": "ok", "schema": {"type": "object", "properties": {"a": {"pattern": "(a+)+\\1"}}}}), "/schema"),
        (json!({"name": "ok", "schema": {"type": "object", "description": "x".repeat(70_000)}}), "/schema"),
    ];
    for (body, pointer) in cases {
        let answer = app.send("POST", &path, Some(&owner), Some(body.clone())).await;
        answer.assert_problem(422, "validation");
        let pointers: Vec<&str> =
            answer.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert!(pointers.iter().any(|p| p.starts_with(pointer)), "{body}: {pointers:?}");
    }
    app.send("POST", &path, Some(&owner), Some(json!({"name": "ok"}))).await.assert_problem(422, "validation");
    app.send_raw("POST", &path, Some(&owner), "application/json", b"{\"name\": ".to_vec())
        .await
        .assert_problem(400, "invalid-json");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn collection_routes_refuse_strangers_the_unauthenticated_and_the_unpermitted() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let (stranger, other_org) = app.owner_of("stranger@example.com", "Other").await;
    let body = json!({"name": "work_orders", "schema": work_orders()});
    let path = format!("/api/v1/orgs/{org}/collections");
    app.send("POST", &path, Some(&owner), Some(body.clone())).await;
    let (member, _) = member_with_role(&app, &org, "member@example.com", "member").await;
    let before = app.snapshot().await;
    let one = format!("{path}/work_orders");
    for (method, url, payload) in [
        ("POST", path.clone(), Some(json!({"name": "more", "schema": {"type": "object"}}))),
        ("GET", path.clone(), None),
        ("GET", one.clone(), None),
        ("PUT", one.clone(), Some(json!({"schema": {"type": "object"}}))),
        ("DELETE", one.clone(), None),
    ] {
        app.send(method, &url, None, payload.clone()).await.assert_problem(401, "unauthenticated");
        app.send(method, &url, Some("pss_forged"), payload.clone()).await.assert_problem(401, "unauthenticated");
        app.send(method, &url, Some(&stranger), payload.clone()).await.assert_problem(404, "not-found");
        if method != "GET" {
            app.send(method, &url, Some(&member), payload.clone()).await.assert_problem(403, "forbidden");
        }
    }
    // The stranger's own organization does not have it either; unknown and malformed names are 404.
    app.get(&format!("/api/v1/orgs/{other_org}/collections/work_orders"), Some(&stranger))
        .await
        .assert_problem(404, "not-found");
    app.get(&format!("{path}/nope"), Some(&owner)).await.assert_problem(404, "not-found");
    app.get(&format!("{path}/Bad%20Name"), Some(&owner)).await.assert_problem(404, "not-found");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn the_collection_quota_is_enforced_with_a_clear_answer() {
    let app = TestApp::spawn_with(Config {
        collections_per_org: 2,
        rate_limits: palisade_server::config::RateLimits::off(),
        ..Config::default()
    })
    .await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let path = format!("/api/v1/orgs/{org}/collections");
    for name in ["one", "two"] {
        let made =
            app.send("POST", &path, Some(&owner), Some(json!({"name": name, "schema": {"type": "object"}}))).await;
        assert_eq!(made.status, 201);
    }
    let before = app.snapshot().await;
    app.send("POST", &path, Some(&owner), Some(json!({"name": "three", "schema": {"type": "object"}})))
        .await
        .assert_problem(409, "quota-exceeded");
    assert_eq!(app.snapshot().await, before);
    // Another organization has its own quota.
    let (other, other_org) = app.owner_of("other@example.com", "Other").await;
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{other_org}/collections"),
            Some(&other),
            Some(json!({"name": "one", "schema": {"type": "object"}})),
        )
        .await;
    assert_eq!(made.status, 201);
}

#[tokio::test]
async fn a_schema_change_that_existing_records_break_is_refused_unless_defaults_mend_them() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let path = format!("/api/v1/orgs/{org}/collections");
    app.send("POST", &path, Some(&owner), Some(json!({"name": "work_orders", "schema": work_orders()}))).await;
    let records = format!("{path}/work_orders/records");
    let first =
        app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": "Fix roof", "status": "open"}}))).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = app
        .send("POST", &records, Some(&owner), Some(json!({"data": {"title": "Paint", "status": "done", "hours": 3}})))
        .await;
    let (first_id, second_id) = (first.body["id"].as_str().unwrap(), second.body["id"].as_str().unwrap());

    // Make "hours" required: the first record lacks it.
    let mut stricter = work_orders();
    stricter["required"] = json!(["title", "status", "hours"]);
    let before = app.snapshot().await;
    let refused =
        app.send("PUT", &format!("{path}/work_orders"), Some(&owner), Some(json!({"schema": stricter.clone()}))).await;
    refused.assert_problem(409, "schema-incompatible");
    assert_eq!(refused.body["record_ids"], json!([first_id]));
    assert!(refused.body["errors"][0]["pointer"].as_str().unwrap().starts_with(&format!("/records/{first_id}")));
    assert_eq!(app.snapshot().await, before, "a refused change writes nothing");

    // With a default for the missing field, the change goes through and the record is mended.
    let changed = app
        .send(
            "PUT",
            &format!("{path}/work_orders"),
            Some(&owner),
            Some(json!({"schema": stricter, "defaults": {"hours": 0}})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["version"], 2);
    let mended = app.get(&format!("{records}/{first_id}"), Some(&owner)).await;
    assert_eq!((mended.body["data"]["hours"].as_i64(), mended.body["version"].as_i64()), (Some(0), Some(2)));
    let untouched = app.get(&format!("{records}/{second_id}"), Some(&owner)).await;
    assert_eq!(untouched.body["version"], 1);
    // New records are now checked against version 2.
    app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": "x", "status": "open"}})))
        .await
        .assert_problem(422, "validation");
    let versions: i64 =
        app.admin().await.query_one("SELECT count(*) FROM palisade.collection_versions", &[]).await.unwrap().get(0);
    assert_eq!(versions, 2);
}

#[tokio::test]
async fn a_collection_that_holds_records_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let path = format!("/api/v1/orgs/{org}/collections");
    app.send("POST", &path, Some(&owner), Some(json!({"name": "work_orders", "schema": work_orders()}))).await;
    let made = app
        .send(
            "POST",
            &format!("{path}/work_orders/records"),
            Some(&owner),
            Some(json!({"data": {"title": "a", "status": "open"}})),
        )
        .await;
    app.send("DELETE", &format!("{path}/work_orders"), Some(&owner), None).await.assert_problem(409, "conflict");
    let id = made.body["id"].as_str().unwrap();
    let gone = app.send("DELETE", &format!("{path}/work_orders/records/{id}"), Some(&owner), None).await;
    assert_eq!(gone.status, 204);
    let deleted = app.send("DELETE", &format!("{path}/work_orders"), Some(&owner), None).await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("{path}/work_orders"), Some(&owner)).await.assert_problem(404, "not-found");
    // The name can be used again, with a different schema that is then the one enforced.
    app.send(
        "POST",
        &path,
        Some(&owner),
        Some(json!({"name": "work_orders", "schema": {"type": "object", "required": ["other"]}})),
    )
    .await;
    app.send(
        "POST",
        &format!("{path}/work_orders/records"),
        Some(&owner),
        Some(json!({"data": {"title": "a", "status": "open"}})),
    )
    .await
    .assert_problem(422, "validation");
}
