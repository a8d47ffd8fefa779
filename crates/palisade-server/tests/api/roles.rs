//! Custom roles (with the rule that nobody grants what they do not hold) and the access review.

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::{member_with_role, work_orders};

async fn create_role(
    app: &TestApp,
    token: &str,
    org: &str,
    name: &str,
    permissions: &[&str],
) -> palisade_testkit::Answer {
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/roles"),
        Some(token),
        Some(json!({"name": name, "description": "made in a test", "permissions": permissions})),
    )
    .await
}

async fn set_role(app: &TestApp, token: &str, org: &str, user: &str, role: &str) -> palisade_testkit::Answer {
    app.send("PATCH", &format!("/api/v1/orgs/{org}/members/{user}"), Some(token), Some(json!({"role": role}))).await
}

#[tokio::test]
async fn a_custom_role_grants_exactly_its_permissions_down_to_the_database() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    app.send(
        "POST",
        &format!("/api/v1/orgs/{org}/collections"),
        Some(&owner),
        Some(json!({"name": "work_orders", "schema": work_orders()})),
    )
    .await;
    let records = format!("/api/v1/orgs/{org}/collections/work_orders/records");
    let job =
        app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": "Roof", "status": "open"}}))).await;
    let job = format!("{records}/{}", job.body["id"].as_str().unwrap());

    let made = create_role(
        &app,
        &owner,
        &org,
        "site_supervisor",
        &["org.read", "collections.read", "records.read_all", "records.update", "records.read_own"],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let role_id = made.body["id"].as_str().unwrap().to_owned();
    assert!(role_id.starts_with("rol_"));
    assert_eq!(made.body["builtin"], false);
    let listed = app.get(&format!("/api/v1/orgs/{org}/roles"), Some(&owner)).await;
    let names: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["owner", "admin", "manager", "member", "contractor", "viewer", "site_supervisor"]);

    let (sam, sam_id) = member_with_role(&app, &org, "sam@example.com", "contractor").await;
    app.get(&job, Some(&sam)).await.assert_problem(404, "not-found");
    let given = set_role(&app, &owner, &org, &sam_id, &role_id).await;
    assert_eq!(given.status, 204, "{}", given.text);
    // records.read_all: the database now shows Sam every record; records.update: Sam may change it.
    assert_eq!(app.get(&job, Some(&sam)).await.status, 200);
    let patched = app.send("PATCH", &job, Some(&sam), Some(json!({"data": {"status": "done"}}))).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    // Not granted: creating and deleting records, managing collections.
    app.send("POST", &records, Some(&sam), Some(json!({"data": {"title": "x", "status": "open"}})))
        .await
        .assert_problem(403, "forbidden");
    app.send("DELETE", &job, Some(&sam), None).await.assert_problem(403, "forbidden");

    // Narrow the role: Sam's next request sees only their own and assigned records again.
    let narrowed = app
        .send(
            "PUT",
            &format!("/api/v1/orgs/{org}/roles/{role_id}"),
            Some(&owner),
            Some(json!({"name": "site_supervisor", "permissions": ["org.read", "records.read_own", "records.update"]})),
        )
        .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.text);
    assert_eq!(narrowed.body["members"], 1);
    app.get(&job, Some(&sam)).await.assert_problem(404, "not-found");

    // A role in use cannot be deleted; once nobody holds it, it can.
    app.send("DELETE", &format!("/api/v1/orgs/{org}/roles/{role_id}"), Some(&owner), None)
        .await
        .assert_problem(409, "conflict");
    assert_eq!(set_role(&app, &owner, &org, &sam_id, "viewer").await.status, 204);
    assert_eq!(
        app.send("DELETE", &format!("/api/v1/orgs/{org}/roles/{role_id}"), Some(&owner), None).await.status,
        204
    );
    let actions: Vec<String> = app
        .admin()
        .await
        .query("SELECT action FROM palisade.audit_events WHERE action LIKE 'role.%' ORDER BY occurred_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["role.created", "role.updated", "role.deleted"]);
}

#[tokio::test]
async fn nobody_grants_a_permission_they_do_not_hold() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    // A delegated role manager: may manage roles and members, may not export the audit log.
    let manager_role =
        create_role(&app, &owner, &org, "people_ops", &["org.read", "members.read", "members.manage", "roles.manage"])
            .await;
    let manager_role = manager_role.body["id"].as_str().unwrap().to_owned();
    let exporter = create_role(&app, &owner, &org, "auditor", &["org.read", "audit.read", "audit.export"]).await;
    let exporter = exporter.body["id"].as_str().unwrap().to_owned();
    let (pat, pat_id) = member_with_role(&app, &org, "pat@example.com", "viewer").await;
    assert_eq!(set_role(&app, &owner, &org, &pat_id, &manager_role).await.status, 204);
    let (_, kim_id) = member_with_role(&app, &org, "kim@example.com", "viewer").await;

    let before = app.snapshot().await;
    create_role(&app, &pat, &org, "sneaky", &["org.read", "audit.export"]).await.assert_problem(403, "forbidden");
    set_role(&app, &pat, &org, &kim_id, &exporter).await.assert_problem(403, "forbidden");
    set_role(&app, &pat, &org, &pat_id, &exporter).await.assert_problem(403, "forbidden");
    let after = app.snapshot().await;
    let not_audit = |s: &Vec<(String, i64, String)>| -> Vec<(String, i64, String)> {
        s.iter().filter(|(t, ..)| !t.starts_with("audit")).cloned().collect()
    };
    assert_eq!(not_audit(&after), not_audit(&before));
    // Within what Pat holds, Pat may act.
    assert_eq!(create_role(&app, &pat, &org, "readers", &["org.read", "members.read"]).await.status, 201);
}

#[tokio::test]
async fn role_routes_refuse_bad_input_strangers_and_the_unpermitted_writing_nothing() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Other").await;
    let (member, _) = member_with_role(&app, &org, "member@example.com", "member").await;
    let made = create_role(&app, &owner, &org, "crew_lead", &["org.read"]).await;
    let role = made.body["id"].as_str().unwrap().to_owned();
    let before = app.snapshot().await;
    let path = format!("/api/v1/orgs/{org}/roles");
    for (body, pointer) in [
        (json!({"name": "Crew Lead", "permissions": []}), "/name"),
        (json!({"name": "admin", "permissions": []}), "/name"),
        (json!({"name": "ok", "permissions": ["records.read_all", "root.everything"]}), "/permissions/1"),
        (json!({"name": "ok", "permissions": [], "description": "x".repeat(501)}), "/description"),
    ] {
        let answer = app.send("POST", &path, Some(&owner), Some(body.clone())).await;
        answer.assert_problem(422, "validation");
        assert_eq!(answer.body["errors"][0]["pointer"], pointer, "{body}");
    }
    app.send("POST", &path, Some(&owner), Some(json!({"name": "ok"}))).await.assert_problem(422, "validation");
    create_role(&app, &owner, &org, "crew_lead", &["org.read"]).await.assert_problem(409, "conflict");
    let one = format!("{path}/{role}");
    let body = Some(json!({"name": "x", "permissions": []}));
    for (method, url, payload) in
        [("POST", path.clone(), body.clone()), ("PUT", one.clone(), body.clone()), ("DELETE", one.clone(), None)]
    {
        app.send(method, &url, None, payload.clone()).await.assert_problem(401, "unauthenticated");
        app.send(method, &url, Some(&stranger), payload.clone()).await.assert_problem(404, "not-found");
        app.send(method, &url, Some(&member), payload.clone()).await.assert_problem(403, "forbidden");
    }
    app.send("DELETE", &format!("{path}/rol_01h455vb4pex5vsknk084sn02q"), Some(&owner), None)
        .await
        .assert_problem(404, "not-found");
    app.send("DELETE", &format!("{path}/garbage"), Some(&owner), None).await.assert_problem(404, "not-found");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn the_access_review_lists_every_member_with_role_permissions_mfa_and_activity() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let (member, _) = member_with_role(&app, &org, "member@example.com", "member").await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Other").await;
    let custom = create_role(&app, &owner, &org, "auditor", &["org.read", "audit.read"]).await;
    let (_, ana_id) = member_with_role(&app, &org, "ana@example.com", "viewer").await;
    set_role(&app, &owner, &org, &ana_id, custom.body["id"].as_str().unwrap()).await;

    let review = app.get(&format!("/api/v1/orgs/{org}/access-review"), Some(&owner)).await;
    assert_eq!(review.status, 200, "{}", review.text);
    let members = review.body["members"].as_array().unwrap();
    let summary: Vec<(&str, &str, Option<&str>, bool)> = members
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap(),
                m["role"].as_str().unwrap(),
                m["custom_role"].as_str(),
                m["mfa"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ana@example.com", "custom", Some("auditor"), false),
            ("member@example.com", "member", None, false),
            ("owner@example.com", "owner", None, false)
        ]
    );
    let ana: &Value = &members[0];
    assert_eq!(ana["permissions"], json!(["audit.read", "org.read"]));
    assert!(members[2]["last_active_at"].as_str().is_some());
    assert!(members[2]["permissions"].as_array().unwrap().len() == palisade_core::Permission::ALL.len());

    let csv = app.get(&format!("/api/v1/orgs/{org}/access-review?format=csv"), Some(&owner)).await;
    assert_eq!((csv.status, csv.header("content-type")), (200, Some("text/csv; charset=utf-8")));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "user_id,email,name,role,custom_role,permissions,mfa,last_active_at,joined_at");
    assert_eq!(lines.len(), 4);
    assert!(lines[1].contains("ana@example.com") && lines[1].contains("auditor"));

    let path = format!("/api/v1/orgs/{org}/access-review");
    app.get(&path, None).await.assert_problem(401, "unauthenticated");
    app.get(&path, Some(&stranger)).await.assert_problem(404, "not-found");
    app.get(&path, Some(&member)).await.assert_problem(403, "forbidden");
    app.get(&format!("{path}?format=xml"), Some(&owner)).await.assert_problem(400, "invalid-query");
}
