//! Organizations: create, list, get, update, members — including other tenants' ids.

use palisade_testkit::TestApp;
use serde_json::json;

/// Another organization's id, a well-formed id of nothing, and ids that do not parse must all
/// get the very same 404.
const NOWHERE: &str = "org_01h455vb4pex5vsknk084sn02q";
const UNPARSABLE: [&str; 4] = ["garbage", "org_", "usr_01h455vb4pex5vsknk084sn02q", "org_01H455VB4PEX5VSKNK084SN02Q"];

#[tokio::test]
async fn creating_an_org_makes_the_caller_owner_and_is_audited() {
    let app = TestApp::spawn().await;
    let token = app.user("owner@example.com").await;
    let answer = app.send("POST", "/api/v1/orgs", Some(&token), Some(json!({"name": "  Acme Field Services "}))).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let id = answer.body["id"].as_str().unwrap();
    assert!(id.starts_with("org_") && id.len() == 30, "{id}");
    assert_eq!(answer.body["name"], "Acme Field Services");
    assert_eq!(answer.body["role"], "owner");
    assert_eq!(answer.header("location"), Some(format!("/api/v1/orgs/{id}").as_str()));
    let members = app.get(&format!("/api/v1/orgs/{id}/members"), Some(&token)).await;
    assert_eq!(members.status, 200);
    assert_eq!(members.body["items"][0]["role"], "owner");
    assert_eq!(members.body["items"][0]["email"], "owner@example.com");
    let event = app
        .admin()
        .await
        .query_one("SELECT tenant_id IS NOT NULL, actor_kind, target_kind, outcome FROM palisade.audit_events WHERE action = 'org.created'", &[])
        .await
        .unwrap();
    assert!(event.get::<_, bool>(0));
    assert_eq!(
        (event.get::<_, String>(1), event.get::<_, String>(2), event.get::<_, String>(3)),
        ("user".into(), "org".into(), "success".into())
    );
}

#[tokio::test]
async fn create_org_refuses_bad_input_and_missing_credentials_writing_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("someone@example.com").await;
    let before = app.snapshot().await;
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": 7}),
        json!({}),
        json!({"name": "A", "tenant_id": "x"}),
    ] {
        app.send("POST", "/api/v1/orgs", Some(&token), Some(body)).await.assert_problem(422, "validation");
    }
    app.send_raw("POST", "/api/v1/orgs", Some(&token), "application/json", b"{name: 1}".to_vec())
        .await
        .assert_problem(400, "invalid-json");
    app.send("POST", "/api/v1/orgs", None, Some(json!({"name": "Acme"}))).await.assert_problem(401, "unauthenticated");
    app.send("POST", "/api/v1/orgs", Some("pss_forged"), Some(json!({"name": "Acme"})))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn each_user_lists_only_their_own_orgs() {
    let app = TestApp::spawn().await;
    let (a, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (b, b_org) = app.owner_of("b@example.com", "Org B").await;
    let second = app.send("POST", "/api/v1/orgs", Some(&a), Some(json!({"name": "Org A2"}))).await;
    let a_list = app.get("/api/v1/orgs", Some(&a)).await;
    let ids: Vec<&str> = a_list.body["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a_org.as_str(), second.body["id"].as_str().unwrap()]);
    let b_list = app.get("/api/v1/orgs", Some(&b)).await;
    assert_eq!(b_list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(b_list.body["items"][0]["id"], b_org);
    app.get("/api/v1/orgs", None).await.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn another_tenants_org_is_indistinguishable_from_no_org() {
    let app = TestApp::spawn().await;
    let (_, a_org) = app.owner_of("a@example.com", "Org A").await;
    let (b, _) = app.owner_of("b@example.com", "Org B").await;
    let before = app.snapshot().await;
    let foreign = app.get(&format!("/api/v1/orgs/{a_org}"), Some(&b)).await;
    foreign.assert_problem(404, "not-found");
    let missing = app.get(&format!("/api/v1/orgs/{NOWHERE}"), Some(&b)).await;
    assert_eq!(foreign.body, missing.body);
    for bad in UNPARSABLE {
        let answer = app.get(&format!("/api/v1/orgs/{bad}"), Some(&b)).await;
        assert_eq!((answer.status, &answer.body), (404, &foreign.body), "{bad}");
    }
    for path in [format!("/api/v1/orgs/{a_org}"), format!("/api/v1/orgs/{a_org}/members")] {
        let answer = app.get(&path, Some(&b)).await;
        assert_eq!((answer.status, &answer.body), (404, &foreign.body), "{path}");
        assert!(!answer.text.contains("Org A") && !answer.text.contains("a@example.com"));
    }
    let patch = app.send("PATCH", &format!("/api/v1/orgs/{a_org}"), Some(&b), Some(json!({"name": "Pwned"}))).await;
    assert_eq!((patch.status, &patch.body), (404, &foreign.body));
    assert_eq!(app.snapshot().await, before, "nothing written, not even an audit event in A");
    let name: String =
        app.admin().await.query_one("SELECT name FROM palisade.orgs WHERE name = 'Org A'", &[]).await.unwrap().get(0);
    assert_eq!(name, "Org A");
}

#[tokio::test]
async fn get_and_members_need_credentials() {
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("a@example.com", "Org A").await;
    app.get(&format!("/api/v1/orgs/{org}"), None).await.assert_problem(401, "unauthenticated");
    app.get(&format!("/api/v1/orgs/{org}/members"), None).await.assert_problem(401, "unauthenticated");
    app.send("PATCH", &format!("/api/v1/orgs/{org}"), None, Some(json!({"name": "X"})))
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn owner_renames_and_the_change_is_audited() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("a@example.com", "Org A").await;
    let answer =
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(json!({"name": "Org Renamed"}))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["name"], "Org Renamed");
    assert_ne!(answer.body["updated_at"], answer.body["created_at"]);
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await.body["name"], "Org Renamed");
    let details: serde_json::Value = app
        .admin()
        .await
        .query_one(
            "SELECT details FROM palisade.audit_events WHERE action = 'org.updated' AND outcome = 'success'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(details, json!({"changed": ["name"]}));
}

#[tokio::test]
async fn update_refuses_bad_input_writing_nothing() {
    let app = TestApp::spawn().await;
    let (token, org) = app.owner_of("a@example.com", "Org A").await;
    let before = app.snapshot().await;
    for body in
        [json!({}), json!({"name": ""}), json!({"name": null}), json!({"name": "ok", "plan": "enterprise"}), json!([1])]
    {
        app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(body))
            .await
            .assert_problem(422, "validation");
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await.body["name"], "Org A");
}

#[tokio::test]
async fn roles_below_admin_cannot_update_and_the_attempt_is_audited() {
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("owner@example.com", "Org A").await;
    let member = app.user("member@example.com").await;
    // Invitations arrive with the roles issue; until then the membership is made directly.
    let admin = app.admin().await;
    for (role, expected) in [("viewer", 403), ("contractor", 403), ("member", 403), ("manager", 403), ("admin", 200)] {
        admin
            .execute(
                "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
                 SELECT o.tenant_id, u.id, $1, now() FROM palisade.orgs o, palisade.users u
                 WHERE u.email = 'member@example.com'
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
                &[&role],
            )
            .await
            .unwrap();
        assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.body["role"], role);
        let answer = app
            .send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&member), Some(json!({"name": format!("By {role}")})))
            .await;
        assert_eq!(answer.status, expected, "{role}: {}", answer.text);
        if expected == 403 {
            answer.assert_problem(403, "forbidden");
        }
    }
    let name: String = admin.query_one("SELECT name FROM palisade.orgs", &[]).await.unwrap().get(0);
    assert_eq!(name, "By admin");
    let denied: i64 = admin
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'org.updated' AND outcome = 'denied'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(denied, 4);
}

#[tokio::test]
async fn removing_a_member_cuts_access_on_the_next_request() {
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("owner@example.com", "Org A").await;
    let member = app.user("member@example.com").await;
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
             SELECT o.tenant_id, u.id, 'member', now() FROM palisade.orgs o, palisade.users u WHERE u.email = 'member@example.com'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.status, 200);
    admin.execute("DELETE FROM palisade.memberships WHERE role = 'member'", &[]).await.unwrap();
    app.get(&format!("/api/v1/orgs/{org}"), Some(&member)).await.assert_problem(404, "not-found");
    assert!(app.get("/api/v1/orgs", Some(&member)).await.body["items"].as_array().unwrap().is_empty());
}

/// The docs page shows exactly the matrix the server enforces.
#[test]
fn docs_permissions_page_matches_the_code() {
    use palisade_core::{OrgRole, Permission};
    let mut table = String::from(
        "| permission | owner | admin | manager | member | contractor | viewer |\n|---|---|---|---|---|---|---|\n",
    );
    for permission in Permission::ALL {
        let cells: Vec<&str> = OrgRole::ALL.iter().map(|r| if r.can(permission) { "yes" } else { "—" }).collect();
        table.push_str(&format!("| `{}` | {} |\n", permission.as_str(), cells.join(" | ")));
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/permissions.md")).unwrap();
    let start = doc.find("<!-- matrix:start -->\n").unwrap() + "<!-- matrix:start -->\n".len();
    let end = doc.find("<!-- matrix:end -->").unwrap();
    assert_eq!(&doc[start..end], table, "docs/permissions.md is out of date");
}

#[tokio::test]
async fn members_read_the_role_matrix_and_others_get_404() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Org A").await;
    let (stranger, _) = app.owner_of("stranger@example.com", "Org B").await;
    let roles = app.get(&format!("/api/v1/orgs/{org}/roles"), Some(&owner)).await;
    assert_eq!(roles.status, 200);
    let items = roles.body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["owner", "admin", "manager", "member", "contractor", "viewer"]);
    let contractor = &items[4]["permissions"];
    assert!(contractor.as_array().unwrap().contains(&json!("records.read_own")));
    assert!(!contractor.as_array().unwrap().contains(&json!("records.read_all")));
    app.get(&format!("/api/v1/orgs/{org}/roles"), Some(&stranger)).await.assert_problem(404, "not-found");
    app.get(&format!("/api/v1/orgs/{org}/roles"), None).await.assert_problem(401, "unauthenticated");
    app.get("/api/v1/orgs/garbage/roles", Some(&owner)).await.assert_problem(404, "not-found");
}

/// Every guarded organization endpoint, every role: allowed exactly when the matrix says so.
#[tokio::test]
async fn every_role_gets_exactly_what_the_matrix_allows() {
    use palisade_core::{OrgRole, Permission};
    let app = TestApp::spawn().await;
    let (_, org) = app.owner_of("owner@example.com", "Org A").await;
    let target = app.user("target@example.com").await;
    let target_id = app.get("/api/v1/me", Some(&target)).await.body["id"].as_str().unwrap().to_owned();
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
             SELECT o.tenant_id, u.id, 'viewer', now() FROM palisade.orgs o, palisade.users u WHERE u.email = 'target@example.com'",
            &[],
        )
        .await
        .unwrap();
    for role in OrgRole::ALL.into_iter().filter(|r| *r != OrgRole::Owner) {
        let email = format!("{}@example.com", role.as_str());
        let token = app.user(&email).await;
        admin
            .execute(
                "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at)
                 SELECT o.tenant_id, u.id, $2, now() FROM palisade.orgs o, palisade.users u WHERE u.email = $1",
                &[&email, &role.as_str()],
            )
            .await
            .unwrap();
        let checks = [
            (Permission::OrgRead, app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await.status),
            (Permission::MembersRead, app.get(&format!("/api/v1/orgs/{org}/members"), Some(&token)).await.status),
            (
                Permission::OrgSettings,
                app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(json!({"name": "Renamed"})))
                    .await
                    .status,
            ),
            (
                Permission::SecuritySettings,
                app.send(
                    "PATCH",
                    &format!("/api/v1/orgs/{org}"),
                    Some(&token),
                    Some(json!({"session_idle_minutes": 60})),
                )
                .await
                .status,
            ),
            (
                Permission::MembersManage,
                app.send(
                    "POST",
                    &format!("/api/v1/orgs/{org}/members/{target_id}/revoke-sessions"),
                    Some(&token),
                    None,
                )
                .await
                .status,
            ),
        ];
        for (permission, status) in checks {
            let expected = if role.can(permission) { "allowed" } else { "refused" };
            let got = match status {
                200 | 204 => "allowed",
                403 => "refused",
                other => panic!("{} on {}: unexpected {other}", role.as_str(), permission.as_str()),
            };
            assert_eq!(got, expected, "{} on {}", role.as_str(), permission.as_str());
        }
    }
}
