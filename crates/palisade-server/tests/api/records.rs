//! Records: the full life cycle with ETags, schema violations, size limits, lists with filters,
//! sorts and cursors, sensitive fields, and least privilege enforced by the database (T3).

use palisade_testkit::{Answer, TestApp};
use serde_json::{Value, json};

use crate::collections::{member_with_role, work_orders};

struct Setup {
    app: TestApp,
    owner: String,
    org: String,
    records: String,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let (owner, org, records) = crate::collections::org_with_work_orders(&app, "owner@example.com").await;
    Setup { app, owner, org, records }
}

impl Setup {
    async fn create(&self, token: &str, data: Value) -> Answer {
        self.app.send("POST", &self.records, Some(token), Some(json!({"data": data}))).await
    }

    async fn create_assigned(&self, token: &str, data: Value, assignees: &[&str]) -> String {
        let made = self
            .app
            .send("POST", &self.records, Some(token), Some(json!({"data": data, "assignees": assignees})))
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        made.body["id"].as_str().unwrap().to_owned()
    }

    async fn send_if_match(&self, method: &str, path: &str, token: &str, etag: &str, body: Option<Value>) -> Answer {
        self.app.send_with(method, path, Some(token), &[("If-Match", etag)], body).await
    }
}

#[tokio::test]
async fn a_record_is_created_read_replaced_patched_and_deleted_with_versions() {
    let s = setup().await;
    let made = s.create(&s.owner, json!({"title": "Fix roof", "status": "open", "hours": 2})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rec_"));
    assert_eq!(made.header("etag"), Some("\"1\""));
    assert_eq!(made.body["version"], 1);
    assert_eq!(made.body["assignees"], json!([]));
    assert!(made.body["created_by"].as_str().unwrap().starts_with("usr_"));
    let one = format!("{}/{id}", s.records);

    let read = s.app.get(&one, Some(&s.owner)).await;
    assert_eq!((read.status, read.body["data"]["title"].as_str()), (200, Some("Fix roof")));

    // Replace at the version read: 200, version 2. The same stale ETag again: 412, nothing changes.
    let replaced = s
        .send_if_match("PUT", &one, &s.owner, "\"1\"", Some(json!({"data": {"title": "Fix roof", "status": "done"}})))
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!((replaced.body["version"].as_i64(), replaced.header("etag")), (Some(2), Some("\"2\"")));
    assert_eq!(replaced.body["data"], json!({"title": "Fix roof", "status": "done"}));
    let before = s.app.snapshot().await;
    s.send_if_match("PUT", &one, &s.owner, "\"1\"", Some(json!({"data": {"title": "x", "status": "open"}})))
        .await
        .assert_problem(412, "precondition-failed");
    s.send_if_match("PATCH", &one, &s.owner, "W/\"2\"", Some(json!({"data": {"hours": 1}})))
        .await
        .assert_problem(412, "precondition-failed");
    s.send_if_match("DELETE", &one, &s.owner, "\"7\"", None).await.assert_problem(412, "precondition-failed");
    assert_eq!(s.app.snapshot().await, before);

    // A merge patch: null removes, other fields stay.
    let patched = s.app.send("PATCH", &one, Some(&s.owner), Some(json!({"data": {"hours": 4, "site": "Depot"}}))).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["data"], json!({"title": "Fix roof", "status": "done", "hours": 4, "site": "Depot"}));
    let patched = s.app.send("PATCH", &one, Some(&s.owner), Some(json!({"data": {"site": null}}))).await;
    assert_eq!(patched.body["data"], json!({"title": "Fix roof", "status": "done", "hours": 4}));
    assert_eq!(patched.body["version"], 4);
    // A patch that would break the schema is refused.
    s.app
        .send("PATCH", &one, Some(&s.owner), Some(json!({"data": {"status": "lost"}})))
        .await
        .assert_problem(422, "validation");

    let deleted = s.send_if_match("DELETE", &one, &s.owner, "\"4\"", None).await;
    assert_eq!(deleted.status, 204);
    s.app.get(&one, Some(&s.owner)).await.assert_problem(404, "not-found");

    // Each change is in the audit log with the names of the fields it touched, never values.
    let events: Vec<(String, Value)> = s
        .app
        .admin()
        .await
        .query(
            "SELECT action, details FROM palisade.audit_events WHERE action LIKE 'record.%' ORDER BY occurred_at, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["record.created", "record.updated", "record.updated", "record.updated", "record.deleted"]);
    assert_eq!(events[1].1["fields"], json!(["hours", "status"]));
    assert_eq!(events[2].1["fields"], json!(["hours", "site"]));
    let all = format!("{events:?}");
    assert!(!all.contains("Fix roof") && !all.contains("Depot"), "values leaked into the audit log: {all}");
}

#[tokio::test]
async fn records_that_break_the_schema_or_the_limits_are_refused_and_nothing_is_written() {
    let s = setup().await;
    let before = s.app.snapshot().await;
    let bad = s.create(&s.owner, json!({"title": "", "status": "lost", "hours": -1, "extra": 1})).await;
    bad.assert_problem(422, "validation");
    let mut pointers: Vec<&str> =
        bad.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    pointers.sort();
    assert_eq!(pointers, ["/data", "/data/hours", "/data/status", "/data/title"], "{}", bad.text);
    assert!(!bad.text.contains("lost"), "violations must not echo values: {}", bad.text);
    s.create(&s.owner, json!({"status": "open"})).await.assert_problem(422, "validation");
    s.create(&s.owner, json!(["not", "an", "object"])).await.assert_problem(422, "validation");
    let huge = json!({"title": "x".repeat(300 * 1024), "status": "open"});
    s.create(&s.owner, huge).await.assert_problem(413, "payload-too-large");
    s.app
        .send(
            "POST",
            &s.records,
            Some(&s.owner),
            Some(json!({"data": {"title": "a", "status": "open"}, "id": "rec_x"})),
        )
        .await
        .assert_problem(422, "validation");
    s.app
        .send(
            "POST",
            &s.records,
            Some(&s.owner),
            Some(json!({"data": {"title": "a", "status": "open"}, "assignees": ["usr_01h455vb4pex5vsknk084sn02q"]})),
        )
        .await
        .assert_problem(422, "validation");
    s.app
        .send(
            "POST",
            &s.records,
            Some(&s.owner),
            Some(json!({"data": {"title": "a", "status": "open"}, "assignees": ["x"]})),
        )
        .await
        .assert_problem(422, "validation");
    s.app
        .send_raw("POST", &s.records, Some(&s.owner), "application/json", b"{\"data\": {".to_vec())
        .await
        .assert_problem(400, "invalid-json");
    s.app
        .send(
            "POST",
            &format!("/api/v1/orgs/{}/collections/nope/records", s.org),
            Some(&s.owner),
            Some(json!({"data": {}})),
        )
        .await
        .assert_problem(404, "not-found");
    assert_eq!(s.app.snapshot().await, before);
}

#[tokio::test]
async fn record_routes_refuse_strangers_and_the_unauthenticated_and_leak_nothing() {
    let s = setup().await;
    let id = s.create(&s.owner, json!({"title": "Secret job", "status": "open"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (stranger, stranger_org) = s.app.owner_of("stranger@example.com", "Other").await;
    s.app
        .send(
            "POST",
            &format!("/api/v1/orgs/{stranger_org}/collections"),
            Some(&stranger),
            Some(json!({"name": "work_orders", "schema": work_orders()})),
        )
        .await;
    let before = s.app.snapshot().await;
    let one = format!("{}/{id}", s.records);
    let body = Some(json!({"data": {"title": "Mine now", "status": "open"}}));
    for (method, url, payload) in [
        ("POST", s.records.clone(), body.clone()),
        ("GET", s.records.clone(), None),
        ("GET", one.clone(), None),
        ("PUT", one.clone(), body.clone()),
        ("PATCH", one.clone(), body.clone()),
        ("DELETE", one.clone(), None),
    ] {
        s.app.send(method, &url, None, payload.clone()).await.assert_problem(401, "unauthenticated");
        let answer = s.app.send(method, &url, Some(&stranger), payload.clone()).await;
        answer.assert_problem(404, "not-found");
        assert!(!answer.text.contains("Secret") && !answer.text.contains("data"), "{}", answer.text);
    }
    // The record's id under the stranger's own organization and collection: 404 too.
    for method in ["GET", "DELETE"] {
        s.app
            .send(
                method,
                &format!("/api/v1/orgs/{stranger_org}/collections/work_orders/records/{id}"),
                Some(&stranger),
                None,
            )
            .await
            .assert_problem(404, "not-found");
    }
    s.app.get(&format!("{}/rec_garbage", s.records), Some(&s.owner)).await.assert_problem(404, "not-found");
    assert_eq!(s.app.snapshot().await, before);
}

#[tokio::test]
async fn lists_filter_sort_and_page_with_cursors_that_cannot_be_moved_or_forged() {
    let s = setup().await;
    for i in 0..7 {
        let status = if i % 2 == 0 { "open" } else { "done" };
        let made = s.create(&s.owner, json!({"title": format!("job {i}"), "status": status, "hours": i})).await;
        assert_eq!(made.status, 201);
    }
    s.create(&s.owner, json!({"title": "no hours", "status": "open"})).await;
    let titles = |answer: &Answer| -> Vec<String> {
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["data"]["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let s = &s;
    let list = |query: &str| {
        let path = format!("{}?{query}", s.records);
        async move { s.app.get(&path, Some(&s.owner)).await }
    };

    // Every title of a listing, following each page's cursor to the end.
    let walk = |query: &'static str| {
        let list = &list;
        async move {
            let mut seen = Vec::new();
            let mut page = list(query).await;
            loop {
                assert_eq!(page.status, 200, "{}", page.text);
                seen.extend(titles(&page));
                match page.body["next_cursor"].as_str() {
                    Some(cursor) => page = list(&format!("{query}&cursor={cursor}")).await,
                    None => break seen,
                }
            }
        }
    };

    // Default order is creation order; pages of 3 follow the cursor to the end.
    let seen = walk("limit=3").await;
    assert_eq!(seen, ["job 0", "job 1", "job 2", "job 3", "job 4", "job 5", "job 6", "no hours"]);
    // Newest first, paged: each cursor continues below the last id shown.
    let newest_first = walk("sort=-id&limit=3").await;
    assert_eq!(newest_first, seen.iter().rev().cloned().collect::<Vec<_>>());

    assert_eq!(titles(&list("filter[status]=done").await), ["job 1", "job 3", "job 5"]);
    assert_eq!(titles(&list("filter[hours][gte]=2&filter[hours][lt]=5").await), ["job 2", "job 3", "job 4"]);
    assert_eq!(titles(&list("filter[hours][in]=1,6&sort=-hours").await), ["job 6", "job 1"]);
    assert_eq!(titles(&list("filter[status][ne]=open").await), ["job 1", "job 3", "job 5"]);
    // Sorted by a field, descending, paged: the cursor carries the sort position.
    let first = list("sort=-hours&limit=4&filter[status]=open").await;
    assert_eq!(titles(&first), ["job 6", "job 4", "job 2", "job 0"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = list(&format!("sort=-hours&limit=4&filter[status]=open&cursor={cursor}")).await;
    assert_eq!(titles(&rest), ["no hours"]);
    assert!(rest.body["next_cursor"].is_null());

    // A cursor is bound to its listing: another sort, a tampered one, or another org's is refused.
    list(&format!("sort=hours&cursor={cursor}")).await.assert_problem(400, "invalid-query");
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    list(&format!("sort=-hours&cursor={}", String::from_utf8(tampered).unwrap()))
        .await
        .assert_problem(400, "invalid-query");
    list("cursor=not-base64!").await.assert_problem(400, "invalid-query");
    let (other, other_org) = s.app.owner_of("other@example.com", "Other").await;
    s.app
        .send(
            "POST",
            &format!("/api/v1/orgs/{other_org}/collections"),
            Some(&other),
            Some(json!({"name": "work_orders", "schema": work_orders()})),
        )
        .await;
    s.app
        .get(
            &format!("/api/v1/orgs/{other_org}/collections/work_orders/records?sort=-hours&cursor={cursor}"),
            Some(&other),
        )
        .await
        .assert_problem(400, "invalid-query");

    // Unknown or sensitive fields, bad values and operators, injection attempts: 400, named.
    for (query, parameter) in [
        ("filter[nope]=1", "filter[nope]"),
        ("filter[rate][gt]=1", "filter[rate][gt]"),
        ("sort=rate", "sort"),
        ("filter[hours]=abc", "filter[hours]"),
        ("filter[hours][like]=1", "filter[hours][like]"),
        ("limit=500", "limit"),
        ("filter[title')%20OR%201%3D1--]=x", "filter[title') OR 1=1--]"),
        ("sort=hours;DROP%20TABLE%20palisade.records", "sort"),
        ("filter%5Bstatus%5D%5Beq%5D%5Bx%5D=open", "filter[status][eq][x]"),
        ("select=*", "select"),
    ] {
        let answer = list(query).await;
        answer.assert_problem(400, "invalid-query");
        assert_eq!(answer.body["errors"][0]["pointer"], parameter, "{query}: {}", answer.text);
    }
    // An injection string as a value is just a value that matches nothing.
    assert!(titles(&list("filter[status]=open'%20OR%20'1'='1").await).is_empty());
    let count: i64 = s.app.admin().await.query_one("SELECT count(*) FROM palisade.records", &[]).await.unwrap().get(0);
    assert_eq!(count, 8);
}

#[tokio::test]
async fn sensitive_fields_are_left_out_for_roles_without_sensitive_read_and_kept_on_their_writes() {
    let s = setup().await;
    let (member, _) = member_with_role(&s.app, &s.org, "member@example.com", "member").await;
    let made = s.create(&s.owner, json!({"title": "Audit", "status": "open", "rate": 120.5})).await;
    let one = format!("{}/{}", s.records, made.body["id"].as_str().unwrap());
    assert_eq!(made.body["data"]["rate"], 120.5);

    let seen = s.app.get(&one, Some(&member)).await;
    assert_eq!(seen.status, 200);
    assert!(seen.body["data"].get("rate").is_none(), "{}", seen.text);
    assert_eq!(seen.body["masked"], json!(["rate"]));
    let listed = s.app.get(&s.records, Some(&member)).await;
    assert!(!listed.text.contains("120.5"), "{}", listed.text);

    // The member replaces the record without the field they cannot see: it is kept.
    let replaced =
        s.app.send("PUT", &one, Some(&member), Some(json!({"data": {"title": "Audit 2", "status": "done"}}))).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    let full = s.app.get(&one, Some(&s.owner)).await;
    assert_eq!(full.body["data"], json!({"title": "Audit 2", "status": "done", "rate": 120.5}));
}

/// Least privilege below the API: a contractor reaches only records they created or are
/// assigned to, through the API and through plain SQL with no filter at all.
#[tokio::test]
async fn contractors_see_only_their_own_and_assigned_records_even_in_unfiltered_sql() {
    let s = setup().await;
    let (contractor, contractor_id) = member_with_role(&s.app, &s.org, "sam@example.com", "contractor").await;
    let others =
        s.create(&s.owner, json!({"title": "Owner's", "status": "open"})).await.body["id"].as_str().unwrap().to_owned();
    let assigned = s.create_assigned(&s.owner, json!({"title": "Assigned", "status": "open"}), &[&contractor_id]).await;
    let own = s.create(&contractor, json!({"title": "Own", "status": "open"})).await;
    assert_eq!(own.status, 201, "{}", own.text);
    let own = own.body["id"].as_str().unwrap().to_owned();

    let listed = s.app.get(&s.records, Some(&contractor)).await;
    let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [assigned.as_str(), own.as_str()]);
    let hidden = format!("{}/{others}", s.records);
    s.app.get(&hidden, Some(&contractor)).await.assert_problem(404, "not-found");
    let before = s.app.snapshot().await;
    s.app
        .send("PATCH", &hidden, Some(&contractor), Some(json!({"data": {"status": "done"}})))
        .await
        .assert_problem(404, "not-found");
    assert_eq!(s.app.snapshot().await, before);
    let worked = s
        .app
        .send(
            "PATCH",
            &format!("{}/{assigned}", s.records),
            Some(&contractor),
            Some(json!({"data": {"status": "done"}})),
        )
        .await;
    assert_eq!(worked.status, 200, "{}", worked.text);
    // The owner sees all three.
    assert_eq!(s.app.get(&s.records, Some(&s.owner)).await.body["items"].as_array().unwrap().len(), 3);

    // Below the API: the runtime role enters the tenant as the contractor and asks for every
    // record with no filter of its own. The database's policy still hides the owner's record.
    let runtime = s.app.runtime().await;
    let proof = s.app.session_proof(&contractor).to_db();
    let org = s.org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof, &org]).await.unwrap();
    let visible: Vec<uuid::Uuid> = runtime
        .query("SELECT id FROM palisade.records ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let updated = runtime.execute("UPDATE palisade.records SET version = version + 1", &[]).await.unwrap();
    let deleted = runtime.execute("DELETE FROM palisade.records", &[]).await.unwrap();
    runtime.batch_execute("ROLLBACK").await.unwrap();
    let uuid_of = |id: &str| id.parse::<palisade_core::RecordId>().unwrap().as_uuid();
    assert_eq!(visible, [uuid_of(&assigned), uuid_of(&own)]);
    assert_eq!((deleted, updated), (2, 2), "writes reach only the visible rows");
    // A contractor cannot plant a record in someone else's name either.
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one("SELECT palisade.enter_tenant($1, now(), $2)", &[&proof, &org]).await.unwrap();
    let planted = runtime
        .execute(
            "INSERT INTO palisade.records (tenant_id, id, collection, data, created_by, created_at, updated_at)
             SELECT $1, gen_random_uuid(), 'work_orders', '{}', m.user_id, now(), now()
             FROM palisade.memberships m WHERE m.role = 'owner'",
            &[&org],
        )
        .await;
    runtime.batch_execute("ROLLBACK").await.unwrap();
    assert!(planted.is_err(), "the scope policy checks new rows too");
}

/// Every record endpoint, every built-in role: allowed exactly when the matrix says so.
#[tokio::test]
async fn every_role_gets_exactly_what_the_matrix_allows_on_records() {
    use palisade_core::{OrgRole, Permission};
    let s = setup().await;
    for role in OrgRole::ALL.into_iter().filter(|r| *r != OrgRole::Owner) {
        let (token, user_id) =
            member_with_role(&s.app, &s.org, &format!("{}@example.com", role.as_str()), role.as_str()).await;
        let unassigned =
            s.create(&s.owner, json!({"title": "t", "status": "open"})).await.body["id"].as_str().unwrap().to_owned();
        let assigned = s.create_assigned(&s.owner, json!({"title": "t", "status": "open"}), &[&user_id]).await;
        let doomed = s.create_assigned(&s.owner, json!({"title": "t", "status": "open"}), &[&user_id]).await;
        let collections = format!("/api/v1/orgs/{}/collections", s.org);
        let checks = [
            (Permission::CollectionsRead, s.app.get(&collections, Some(&token)).await.status),
            (
                Permission::CollectionsManage,
                s.app
                    .send(
                        "POST",
                        &collections,
                        Some(&token),
                        Some(json!({"name": format!("c_{}", role.as_str()), "schema": {"type": "object"}})),
                    )
                    .await
                    .status,
            ),
            (Permission::RecordsReadOwn, s.app.get(&format!("{}/{assigned}", s.records), Some(&token)).await.status),
            (Permission::RecordsReadAll, s.app.get(&format!("{}/{unassigned}", s.records), Some(&token)).await.status),
            (Permission::RecordsCreate, s.create(&token, json!({"title": "t", "status": "open"})).await.status),
            (
                Permission::RecordsUpdate,
                s.app
                    .send(
                        "PATCH",
                        &format!("{}/{assigned}", s.records),
                        Some(&token),
                        Some(json!({"data": {"status": "done"}})),
                    )
                    .await
                    .status,
            ),
            (
                Permission::RecordsDelete,
                s.app.send("DELETE", &format!("{}/{doomed}", s.records), Some(&token), None).await.status,
            ),
        ];
        for (permission, status) in checks {
            let expected = if role.can(permission) { "allowed" } else { "refused" };
            let got = match status {
                200 | 201 | 204 => "allowed",
                // Records outside the caller's scope are invisible, not forbidden.
                403 | 404 => "refused",
                other => panic!("{} on {}: unexpected {other}", role.as_str(), permission.as_str()),
            };
            assert_eq!(got, expected, "{} on {}", role.as_str(), permission.as_str());
        }
    }
}

#[tokio::test]
async fn record_and_byte_quotas_are_enforced_per_organization_with_a_clear_answer() {
    use palisade_server::config::Config;
    let app = TestApp::spawn_with(Config {
        records_per_org: 3,
        record_bytes_per_org: 100_000,
        rate_limits: palisade_server::config::RateLimits::off(),
        ..Config::default()
    })
    .await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/collections"),
        Some(&owner),
        Some(json!({"name": "work_orders", "schema": work_orders()})),
    )
    .await;
    let records = format!("/api/v1/orgs/{org}/collections/work_orders/records");
    let mut ids = Vec::new();
    for i in 0..3 {
        let made = app
            .send(
                "POST",
                &records,
                Some(&owner),
                Some(json!({"data": {"title": format!("job {i}"), "status": "open"}})),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let before = app.snapshot().await;
    let refused = app
        .send("POST", &records, Some(&owner), Some(json!({"data": {"title": "one too many", "status": "open"}})))
        .await;
    refused.assert_problem(409, "quota-exceeded");
    assert!(refused.body["detail"].as_str().unwrap().contains("record quota"), "{}", refused.text);
    assert_eq!(app.snapshot().await, before);
    // Deleting frees room; another organization has its own quota.
    assert_eq!(app.send("DELETE", &format!("{records}/{}", ids[0]), Some(&owner), None).await.status, 204);
    let made = app
        .send("POST", &records, Some(&owner), Some(json!({"data": {"title": "fits again", "status": "open"}})))
        .await;
    assert_eq!(made.status, 201);
    // Bytes: a record of 120 kB does not fit 100 kB, whatever the count.
    let (other, other_org) = app.owner_of("other@example.com", "Other").await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{other_org}/collections"),
        Some(&other),
        Some(json!({"name": "notes", "schema": {"type": "object"}})),
    )
    .await;
    let big = json!({"data": {"text": "x".repeat(120_000)}});
    app.send("POST", &format!("/api/v1/orgs/{other_org}/collections/notes/records"), Some(&other), Some(big))
        .await
        .assert_problem(409, "quota-exceeded");
    let small = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{other_org}/collections/notes/records"),
            Some(&other),
            Some(json!({"data": {"text": "ok"}})),
        )
        .await;
    assert_eq!(small.status, 201);
}
