//! The console's collection and record pages over real HTTP: creating a collection from a
//! JSON Schema, the schema-driven record form (create, edit with its version, delete after a
//! confirmation), the table's filters and pages, sensitive fields behind Reveal or masked, and
//! the refusals: bad input, a form without its CSRF token, another organization's user, and
//! stored markup that must come back escaped.

use std::str::FromStr;

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::collections::member_with_role;
use crate::console_support::{ConsoleClient, Page, console_owner, hidden_value};

fn jobs() -> Value {
    json!({
        "type": "object",
        "description": "Jobs for the crew",
        "properties": {
            "title": {"type": "string", "title": "Title", "maxLength": 200},
            "status": {"type": "string", "enum": ["open", "done"]},
            "amount": {"type": "number", "minimum": 0},
            "urgent": {"type": "boolean"},
            "ssn": {"type": "string", "x-palisade-sensitive": true}
        },
        "required": ["title"],
        "additionalProperties": false
    })
}

/// Creates the `jobs` collection in `org` through the API.
async fn jobs_collection(app: &TestApp, token: &str, org: &str) {
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(token),
            Some(json!({"name": "jobs", "schema": jobs()})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
}

/// Creates a record through the API; returns its id.
async fn api_record(app: &TestApp, token: &str, org: &str, data: Value) -> String {
    let made = app
        .send("POST", &format!("/api/v1/orgs/{org}/collections/jobs/records"), Some(token), Some(json!({"data": data})))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    made.body["id"].as_str().unwrap().to_owned()
}

fn record_id_of(answer: &Page) -> String {
    let location =
        answer.location.as_deref().unwrap_or_else(|| panic!("a redirect: {} {}", answer.status, answer.html));
    let id = location.split("/records/").nth(1).expect("a record page").split('?').next().unwrap();
    id.to_owned()
}

#[tokio::test]
async fn console_collection_is_created_and_bad_schemas_are_shown_inline() {
    let app = TestApp::spawn().await;
    let (browser, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    let list = browser.get(&format!("/orgs/{org}/collections")).await;
    assert_eq!(list.status, 200, "{}", list.html);
    assert!(list.html.contains("id=\"new-collection\""));
    let new = format!("/orgs/{org}/collections/new");
    let form = browser.get(&new).await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains("<label for=\"schema\">") && form.html.contains("&#34;title&#34;"), "{}", form.html);
    assert!(form.html.contains("id=\"create-collection\"") && !form.html.contains(" style="));

    // Not JSON: 422, the error next to the schema field, nothing written.
    let broken = browser.submit(&new, &new, &[("name", "orders"), ("schema", "{\"type\": \"object\",")]).await;
    assert_eq!(broken.status, 422, "{}", broken.html);
    assert!(broken.html.contains("id=\"schema-error\"") && broken.html.contains("not valid JSON"), "{}", broken.html);
    assert!(broken.html.contains("aria-invalid=\"true\""));
    assert!(broken.html.contains("{&#34;type&#34;: &#34;object&#34;,"), "what was typed is kept");
    // JSON, but not an object schema; and a name that cannot be one.
    let not_object = browser.submit(&new, &new, &[("name", "orders"), ("schema", "{\"type\": \"string\"}")]).await;
    assert_eq!(not_object.status, 422);
    assert!(not_object.html.contains("id=\"schema-error\""), "{}", not_object.html);
    let bad_name = browser.submit(&new, &new, &[("name", "Bad Name"), ("schema", "{\"type\": \"object\"}")]).await;
    assert_eq!(bad_name.status, 422);
    assert!(bad_name.html.contains("id=\"name-error\""), "{}", bad_name.html);
    // Without the form's token: refused before anything is looked at.
    let forged = browser.post(&new, &[("name", "orders"), ("schema", "{\"type\": \"object\"}")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(app.count("collections").await, 0, "nothing written");

    let schema = jobs().to_string();
    let created = browser.submit(&new, &new, &[("name", "orders"), ("schema", &schema)]).await;
    assert_eq!(created.status, 303, "{}", created.html);
    assert_eq!(
        created.location.as_deref(),
        Some(format!("/orgs/{org}/collections/orders?notice=collection-created").as_str())
    );
    let stored = app.get(&format!("/api/v1/orgs/{org}/collections/orders"), Some(&token)).await;
    assert_eq!((stored.status, &stored.body["schema"]), (200, &jobs()));
    let taken = browser.submit(&new, &new, &[("name", "orders"), ("schema", &schema)]).await;
    assert_eq!(taken.status, 409);
    assert!(taken.html.contains("id=\"name-error\""));
    let list = browser.get(&format!("/orgs/{org}/collections")).await;
    assert!(list.html.contains("Jobs for the crew") && list.html.contains("/collections/orders\""));

    // A schema change that an existing record blocks is refused, the record named.
    let id = api_record_in(&app, &token, &org, "orders", json!({"title": "Roof"})).await;
    let page = format!("/orgs/{org}/collections/orders/schema");
    let edit = browser.get(&page).await;
    assert!(edit.html.contains("&#34;additionalProperties&#34;: false"), "pretty-printed: {}", edit.html);
    let stricter = json!({"type": "object", "properties": {"title": {"type": "string"}, "site": {"type": "string"}},
        "required": ["title", "site"]})
    .to_string();
    let blocked = browser.submit(&page, &page, &[("schema", &stricter)]).await;
    assert_eq!(blocked.status, 409, "{}", blocked.html);
    assert!(blocked.html.contains("id=\"schema-error\"") && blocked.html.contains(&format!("data-record-id=\"{id}\"")));
    let mended = browser.submit(&page, &page, &[("schema", &stricter), ("defaults", "{\"site\": \"HQ\"}")]).await;
    assert_eq!(mended.status, 303, "{}", mended.html);
    let record = app.get(&format!("/api/v1/orgs/{org}/collections/orders/records/{id}"), Some(&token)).await;
    assert_eq!(record.body["data"], json!({"title": "Roof", "site": "HQ"}));
}

async fn api_record_in(app: &TestApp, token: &str, org: &str, collection: &str, data: Value) -> String {
    let path = format!("/api/v1/orgs/{org}/collections/{collection}/records");
    let made = app.send("POST", &path, Some(token), Some(json!({"data": data}))).await;
    assert_eq!(made.status, 201, "{}", made.text);
    made.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn console_record_is_created_edited_and_deleted_through_forms() {
    let app = TestApp::spawn().await;
    let (browser, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    jobs_collection(&app, &token, &org).await;
    let me = app.get("/api/v1/me", Some(&token)).await.body["id"].as_str().unwrap().to_owned();
    let base = format!("/orgs/{org}/collections/jobs");
    let new = format!("{base}/records/new");

    let form = browser.get(&new).await;
    assert_eq!(form.status, 200, "{}", form.html);
    for expected in [
        "<label for=\"field-title\">",
        "name=\"field.title\"",
        "maxlength=\"200\"",
        "<select id=\"field-status\" name=\"field.status\"",
        "id=\"field-amount\" name=\"field.amount\" type=\"number\"",
        "step=\"any\"",
        "type=\"checkbox\" id=\"field-urgent\"",
        "<select id=\"assignees\" name=\"assignees\" multiple",
        &format!("<option value=\"{me}\">"),
        "id=\"save-record\"",
    ] {
        assert!(form.html.contains(expected), "{expected} in {}", form.html);
    }

    // A number that does not parse: the error next to it, nothing written, what was typed kept.
    let bad = browser
        .submit(&new, &new, &[("field.title", "Fix roof"), ("field.amount", "abc"), ("field.status", "open")])
        .await;
    assert_eq!(bad.status, 422, "{}", bad.html);
    assert!(bad.html.contains("id=\"field-amount-error\"") && bad.html.contains("Enter a number."), "{}", bad.html);
    assert!(bad.html.contains("value=\"Fix roof\""));
    // What the schema refuses (minimum 0) comes back from the app to the same place.
    let negative = browser.submit(&new, &new, &[("field.title", "Fix roof"), ("field.amount", "-3")]).await;
    assert_eq!(negative.status, 422, "{}", negative.html);
    assert!(negative.html.contains("id=\"field-amount-error\""), "{}", negative.html);
    let forged = browser.post(&new, &[("field.title", "Forged"), ("field.amount", "1")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(app.count("records").await, 0, "nothing written");

    let created = browser
        .submit(
            &new,
            &new,
            &[
                ("field.title", "Fix roof"),
                ("field.status", "open"),
                ("field.amount", "12.5"),
                ("field.urgent", "true"),
                ("field.ssn", ""),
                ("assignees", &me),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.html);
    let id = record_id_of(&created);
    assert_eq!(created.location.as_deref(), Some(format!("{base}/records/{id}?notice=record-created").as_str()));
    let api = format!("/api/v1/orgs/{org}/collections/jobs/records/{id}");
    let stored = app.get(&api, Some(&token)).await;
    assert_eq!(stored.body["data"], json!({"title": "Fix roof", "status": "open", "amount": 12.5, "urgent": true}));
    assert_eq!(stored.body["assignees"], json!([me]));

    let table = browser.get(&base).await;
    assert_eq!(table.status, 200);
    assert!(table.html.contains("<table id=\"records\">") && table.html.contains(&format!("data-record-id=\"{id}\"")));
    assert!(table.html.contains("Fix roof") && table.html.contains("id=\"new-record\""));
    let page = browser.get(&format!("{base}/records/{id}")).await;
    assert!(page.html.contains("id=\"edit-record\"") && page.html.contains("id=\"delete-record\""), "{}", page.html);

    // Edit: the version rides along; an emptied optional field is removed.
    let edit = format!("{base}/records/{id}/edit");
    let opened = browser.get(&edit).await;
    assert_eq!(hidden_value(&opened.html, "version").as_deref(), Some("1"));
    assert!(opened.html.contains("value=\"12.5\"") && opened.html.contains(" checked"), "{}", opened.html);
    let saved = browser
        .post(
            &edit,
            &[
                ("_csrf", &opened.csrf()),
                ("version", "1"),
                ("field.title", "Fix the roof"),
                ("field.status", "done"),
                ("field.amount", ""),
                ("assignees", &me),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let stored = app.get(&api, Some(&token)).await;
    assert_eq!(stored.body["version"], 2);
    assert_eq!(stored.body["data"], json!({"title": "Fix the roof", "status": "done", "urgent": false}));
    // The same (now stale) form again: "changed since you opened it", nothing overwritten.
    let stale = browser
        .post(
            &edit,
            &[("_csrf", &opened.csrf()), ("version", "1"), ("field.title", "Overwrite"), ("field.status", "open")],
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.html);
    assert!(stale.html.contains("id=\"stale\"") && stale.html.contains("changed since you opened it"));
    assert_eq!(app.get(&api, Some(&token)).await.body["data"]["title"], "Fix the roof");

    // Delete: a confirmation page, then the POST.
    let confirm_page = format!("{base}/records/{id}/delete");
    let confirm = browser.get(&confirm_page).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains("It cannot be undone.") && confirm.html.contains("id=\"confirm-delete\""));
    assert_eq!(browser.post(&confirm_page, &[("version", "2")]).await.status, 403, "no CSRF token");
    assert_eq!(app.get(&api, Some(&token)).await.status, 200, "still there");
    let deleted = browser.post(&confirm_page, &[("_csrf", &confirm.csrf()), ("version", "2")]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.html);
    assert_eq!(deleted.location.as_deref(), Some(format!("{base}?notice=record-deleted").as_str()));
    assert_eq!(app.get(&api, Some(&token)).await.status, 404);
    assert_eq!(browser.get(&format!("{base}/records/{id}")).await.status, 404);
}

#[tokio::test]
async fn console_record_table_filters_sorts_and_pages() {
    let app = TestApp::spawn().await;
    let (browser, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    jobs_collection(&app, &token, &org).await;
    let small = api_record(&app, &token, &org, json!({"title": "Small", "amount": 5})).await;
    let middle = api_record(&app, &token, &org, json!({"title": "Middle", "amount": 50})).await;
    let large = api_record(&app, &token, &org, json!({"title": "Large", "amount": 500, "ssn": "078-05-1120"})).await;
    let base = format!("/orgs/{org}/collections/jobs");
    let position = |page: &Page, id: &str| page.html.find(&format!("data-record-id=\"{id}\"")).unwrap_or(usize::MAX);

    let all = browser.get(&base).await;
    assert_eq!(all.status, 200, "{}", all.html);
    assert!(position(&all, &small) < position(&all, &middle) && position(&all, &middle) < position(&all, &large));
    assert!(all.html.contains("<option value=\"amount\">") && !all.html.contains("<option value=\"ssn\">"));
    assert!(all.html.contains("•••• hidden") && !all.html.contains("078-05-1120"), "sensitive: hidden in the table");

    let filtered = browser.get(&format!("{base}?field=amount&op=gte&value=10&sort=amount&dir=desc")).await;
    assert_eq!(filtered.status, 200, "{}", filtered.html);
    assert_eq!(position(&filtered, &small), usize::MAX, "filtered out");
    assert!(position(&filtered, &large) < position(&filtered, &middle), "descending");

    let bad = browser.get(&format!("{base}?field=amount&op=gt&value=abc")).await;
    assert_eq!(bad.status, 400);
    assert!(bad.html.contains("id=\"filter-value-error\""), "{}", bad.html);
    let sensitive = browser.get(&format!("{base}?field=ssn&value=078-05-1120")).await;
    assert_eq!(sensitive.status, 400, "the app refuses sensitive filters");
    assert!(sensitive.html.contains("cannot be filtered"), "{}", sensitive.html);

    let first = browser.get(&format!("{base}?limit=2")).await;
    assert!(position(&first, &small) < usize::MAX && position(&first, &large) == usize::MAX);
    let marker = "id=\"next-page\" href=\"";
    let start = first.html.find(marker).expect("a next page link") + marker.len();
    let next = first.html[start..].split('"').next().unwrap().replace("&#38;", "&");
    let second = browser.get(&next).await;
    assert_eq!(second.status, 200, "{}", second.html);
    assert!(position(&second, &large) < usize::MAX && position(&second, &small) == usize::MAX);
    assert!(!second.html.contains("id=\"next-page\""));
    let forged = browser.get(&format!("{base}?cursor=not-a-cursor")).await;
    assert_eq!(forged.status, 400);
}

#[tokio::test]
async fn console_sensitive_fields_need_reveal_and_stay_masked_for_other_roles() {
    let app = TestApp::spawn().await;
    let (owner, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    jobs_collection(&app, &token, &org).await;
    let canary = "078-05-1120-CANARY";
    let id = api_record(&app, &token, &org, json!({"title": "Payroll", "ssn": canary})).await;
    let page = format!("/orgs/{org}/collections/jobs/records/{id}");

    let reads = || async { sensitive_reads(&app, &id).await };
    let hidden = owner.get(&page).await;
    assert_eq!(hidden.status, 200);
    assert!(!hidden.html.contains(canary) && hidden.html.contains("id=\"reveal\""), "{}", hidden.html);
    assert_eq!(reads().await, 0, "nothing was decrypted, so no clear read is audited");
    let table = owner.get(&format!("/orgs/{org}/collections/jobs")).await;
    assert!(table.html.contains("Payroll") && !table.html.contains(canary));
    assert_eq!(reads().await, 0, "the table opens nothing either");
    // Reveal is a POST with the page's token: a link (GET) reveals nothing and audits nothing.
    let linked = owner.get(&format!("{page}?reveal=1")).await;
    assert!(!linked.html.contains(canary));
    assert_eq!(owner.post(&page, &[]).await.status, 403, "no CSRF token");
    assert_eq!(reads().await, 0);
    let revealed = owner.post(&page, &[("_csrf", &hidden.csrf())]).await;
    assert_eq!(revealed.status, 200);
    assert!(revealed.html.contains(canary));
    assert_eq!(reads().await, 1, "Reveal is an audited clear read");
    let edit = owner.get(&format!("{page}/edit")).await;
    assert!(!edit.html.contains(canary), "the edit form never shows it");
    assert_eq!(reads().await, 1, "the edit form opens nothing");
    // Saving with the sensitive field left empty keeps its value.
    let saved = owner
        .post(
            &format!("{page}/edit"),
            &[("_csrf", &edit.csrf()), ("version", "1"), ("field.title", "Payroll 2"), ("field.ssn", "")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let stored = app.get(&format!("/api/v1/orgs/{org}/collections/jobs/records/{id}"), Some(&token)).await;
    assert_eq!(stored.body["data"], json!({"title": "Payroll 2", "ssn": canary, "urgent": false}));

    member_with_role(&app, &org, "member@example.com", "member").await;
    let member = ConsoleClient::new(&app);
    member.sign_in("member@example.com").await;
    let member_csrf = member.get(&page).await.csrf();
    let forced = member.post(&page, &[("_csrf", &member_csrf)]).await;
    assert!(!forced.html.contains(canary), "Reveal does not reveal to a role without sensitive_read");
    for path in [page.clone(), format!("{page}/edit")] {
        let seen = member.get(&path).await;
        assert_eq!(seen.status, 200, "{path}: {}", seen.html);
        assert!(!seen.html.contains(canary), "{path}");
        assert!(!seen.html.contains("id=\"reveal\""), "{path}");
    }
    assert!(member.get(&page).await.html.contains("hidden — your role cannot see it"));
    // Saving the form without ever seeing the value keeps it.
    let form = member.get(&format!("{page}/edit")).await;
    let version = hidden_value(&form.html, "version").expect("version");
    let fields = [("_csrf", form.csrf()), ("version", version), ("field.title", "Payroll 3".to_owned())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = member.post(&format!("{page}/edit"), &fields).await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let stored = app.get(&format!("/api/v1/orgs/{org}/collections/jobs/records/{id}"), Some(&token)).await;
    assert_eq!(stored.body["data"], json!({"title": "Payroll 3", "ssn": canary, "urgent": false}));
    let table = member.get(&format!("/orgs/{org}/collections/jobs")).await;
    assert!(table.html.contains("•••• hidden") && !table.html.contains(canary));
}

#[tokio::test]
async fn console_another_organizations_user_gets_not_found_and_nothing_leaks() {
    let app = TestApp::spawn().await;
    let (_, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    jobs_collection(&app, &token, &org).await;
    let id = api_record(&app, &token, &org, json!({"title": "Quiet-Canary-Job", "amount": 7})).await;
    let (stranger, other_org, other_token) = console_owner(&app, "stranger@example.com", "Elsewhere").await;
    let base = format!("/orgs/{org}/collections/jobs");
    for path in [
        format!("/orgs/{org}/collections"),
        format!("/orgs/{org}/collections/new"),
        base.clone(),
        format!("{base}/schema"),
        format!("{base}/records/new"),
        format!("{base}/records/{id}"),
        format!("{base}/records/{id}/edit"),
        format!("{base}/records/{id}/delete"),
    ] {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.html);
        assert!(!answer.html.contains("Quiet-Canary-Job") && !answer.html.contains("Crew"), "{path}");
    }
    // The stranger's own organization with a same-named collection does not reach the record.
    jobs_collection(&app, &other_token, &other_org).await;
    let own = stranger.get(&format!("/orgs/{other_org}/collections/jobs/records/{id}")).await;
    assert_eq!(own.status, 404);
    // Writes with the stranger's own valid token: 404, nothing changed.
    let csrf = stranger.get(&format!("/orgs/{other_org}/collections")).await.csrf();
    let before = app.snapshot().await;
    let edit = stranger
        .post(&format!("{base}/records/{id}/edit"), &[("_csrf", &csrf), ("version", "1"), ("field.title", "Hijacked")])
        .await;
    assert_eq!(edit.status, 404);
    let delete = stranger.post(&format!("{base}/records/{id}/delete"), &[("_csrf", &csrf)]).await;
    assert_eq!(delete.status, 404);
    let reveal = stranger.post(&format!("{base}/records/{id}"), &[("_csrf", &csrf)]).await;
    assert_eq!(reveal.status, 404);
    assert!(!reveal.html.contains("Quiet-Canary-Job"));
    let create = stranger.post(&format!("{base}/records/new"), &[("_csrf", &csrf), ("field.title", "Planted")]).await;
    assert_eq!(create.status, 404);
    let schema =
        stranger.post(&format!("{base}/schema"), &[("_csrf", &csrf), ("schema", "{\"type\": \"object\"}")]).await;
    assert_eq!(schema.status, 404);
    assert_eq!(app.snapshot().await, before, "nothing written");
    let stored = app.get(&format!("/api/v1/orgs/{org}/collections/jobs/records/{id}"), Some(&token)).await;
    assert_eq!(stored.body["data"]["title"], "Quiet-Canary-Job");
}

#[tokio::test]
async fn console_stored_markup_is_shown_escaped() {
    let app = TestApp::spawn().await;
    let (browser, org, token) = console_owner(&app, "owner@example.com", "Crew").await;
    let mut schema = jobs();
    schema["description"] = json!("<img src=x onerror=alert(2)>");
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(&token),
            Some(json!({"name": "jobs", "schema": schema})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let new = format!("/orgs/{org}/collections/jobs/records/new");
    let created =
        browser.submit(&new, &new, &[("field.title", "<script>alert(1)</script>"), ("field.status", "open")]).await;
    assert_eq!(created.status, 303, "{}", created.html);
    let id = record_id_of(&created);
    let base = format!("/orgs/{org}/collections/jobs");
    for path in [
        base.clone(),
        format!("{base}/records/{id}"),
        format!("{base}/records/{id}/edit"),
        format!("{base}/records/{id}/delete"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        // askama escapes with numeric references: `&#60;` is `&lt;`.
        assert!(page.html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{path}: {}", page.html);
        assert!(!page.html.contains("<script>alert(1)"), "{path}");
    }
    let list = browser.get(&format!("/orgs/{org}/collections")).await;
    assert!(list.html.contains("&#60;img src=x onerror=alert(2)&#62;") && !list.html.contains("<img src=x"));
}

/// How many `record.sensitive_read` events name the record.
async fn sensitive_reads(app: &TestApp, record: &str) -> i64 {
    let uuid = palisade_core::RecordId::from_str(record).expect("record id").as_uuid();
    app.admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'record.sensitive_read' \
             AND (target_id = $1 OR details::text LIKE '%' || $2 || '%')",
            &[&uuid, &record],
        )
        .await
        .unwrap()
        .get(0)
}
