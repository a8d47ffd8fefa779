//! The console's team, audit and security pages over real HTTP: members and invitations, roles
//! and the access review, the audit log, API keys, secrets and encryption keys — each with its
//! success, bad input, a form without its CSRF token, another tenant's user, and a role without
//! the permission.

use palisade_core::OrgId;
use palisade_testkit::{PASSWORD, TestApp};

use crate::collections::member_with_role;
use crate::console_support::{ConsoleClient, Page, console_owner};

/// The HTML of the table with this id (up to its end).
fn table<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<table id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id}:\n{html}"));
    let end = html[start..].find("</table>").map_or(html.len(), |e| start + e);
    &html[start..end]
}

/// Attribute values as the browser reads them (askama escapes `&` in links).
fn unescape(text: &str) -> String {
    text.replace("&#38;", "&").replace("&amp;", "&")
}

/// The `href` of the element with this id.
fn href_of(html: &str, id: &str) -> Option<String> {
    let tag_start = html.find(&format!("id=\"{id}\""))?;
    let tag_open = html[..tag_start].rfind('<')?;
    let tag = &html[tag_open..tag_open + html[tag_open..].find('>')?];
    let start = tag.find("href=\"")? + 6;
    Some(unescape(&tag[start..start + tag[start..].find('"')?]))
}

/// Every distinct path in the page that starts with `prefix` (form actions and links).
fn paths_with(html: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(prefix) {
        let end = rest[at..].find('"').map_or(rest.len(), |e| at + e);
        let path = unescape(&rest[at..end]);
        if !found.contains(&path) {
            found.push(path);
        }
        rest = &rest[end..];
    }
    found
}

fn is_error_page(page: &Page, status: u16) -> bool {
    page.status == status && page.html.contains(&format!("Status {status}"))
}

async fn invitations(app: &TestApp) -> i64 {
    app.count("invitations").await
}

#[tokio::test]
async fn console_members_invite_revoke_change_role_end_sessions_and_remove() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let (_, mia) = member_with_role(&app, &org, "mia@example.com", "member").await;
    let members = format!("/orgs/{org}/members");
    let page = owner.get(&members).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(table(&page.html, "members").contains("mia@example.com"));
    assert!(page.html.contains("<table id=\"invitations\""));
    assert!(page.html.contains("<select id=\"role\" name=\"role\"") && page.html.contains("id=\"invite\""));
    assert!(!page.html.contains(" style=") && !page.html.contains("<script>"), "no inline style or script");

    // Bad input: the error sits next to the field, nothing is written and nothing is sent.
    let before = invitations(&app).await;
    let bad = owner
        .submit(&members, &format!("/orgs/{org}/invitations"), &[("email", "not an address"), ("role", "member")])
        .await;
    assert_eq!(bad.status, 422, "{}", bad.html);
    assert!(bad.html.contains("aria-describedby=\"email-error\"") && bad.html.contains("id=\"email-error\""));
    assert!(bad.html.contains("value=\"not an address\""), "what was typed stays");
    let unknown_role = owner
        .submit(&members, &format!("/orgs/{org}/invitations"), &[("email", "x@example.com"), ("role", "emperor")])
        .await;
    assert_eq!(unknown_role.status, 422);
    assert!(unknown_role.html.contains("id=\"role-error\""));
    // The same form without its CSRF token is refused before anything is read.
    let forged =
        owner.post(&format!("/orgs/{org}/invitations"), &[("email", "sam@example.com"), ("role", "member")]).await;
    assert!(is_error_page(&forged, 403), "{}", forged.html);
    assert_eq!(invitations(&app).await, before, "nothing written");
    assert!(app.mails_to("sam@example.com").is_empty() && app.mails_to("x@example.com").is_empty());

    // Success: the invitation is listed and emailed.
    let sent = owner
        .submit(&members, &format!("/orgs/{org}/invitations"), &[("email", "Sam@Example.com"), ("role", "contractor")])
        .await;
    assert_eq!(sent.status, 303, "{}", sent.html);
    assert_eq!(sent.location.as_deref(), Some(format!("/orgs/{org}/members?notice=invited").as_str()));
    let page = owner.get(sent.location.as_deref().unwrap()).await;
    assert!(page.html.contains("The invitation is sent."));
    let pending = table(&page.html, "invitations");
    assert!(pending.contains("sam@example.com") && pending.contains("contractor"), "{pending}");
    let mail = app.wait_for_mail("sam@example.com", "You are invited").await;
    assert!(mail.contains("/accept-invite?token="));

    // Revoking it takes it off the list.
    let revoke = paths_with(&page.html, &format!("/orgs/{org}/invitations/inv_"));
    assert_eq!(revoke.len(), 1, "{revoke:?}");
    let revoked = owner.post(&revoke[0], &[("_csrf", &page.csrf())]).await;
    assert_eq!(revoked.status, 303);
    assert!(!table(&owner.get(&members).await.html, "invitations").contains("sam@example.com"));

    // Change a role through the member's select.
    let role_form = format!("/orgs/{org}/members/{mia}/role");
    assert!(page.html.contains(&format!("action=\"{role_form}\"")));
    assert!(page.html.contains(&format!("<label for=\"role-{mia}\" class=\"visually-hidden\">")));
    let changed = owner.submit(&members, &role_form, &[("role", "manager")]).await;
    assert_eq!(changed.location.as_deref(), Some(format!("/orgs/{org}/members?notice=role-changed").as_str()));
    let mia_token = app.login("mia@example.com").await;
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}"), Some(&mia_token)).await.body["role"], "manager");
    let bogus = owner.submit(&members, &role_form, &[("role", "emperor")]).await;
    assert_eq!(bogus.status, 422);
    assert!(bogus.html.contains("id=\"members-problem\""), "{}", bogus.html);

    // The only owner cannot step down: said on the page, nothing changes.
    let me = app.get("/api/v1/me", Some(&app.login("owner@example.com").await)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alone = owner.submit(&members, &format!("/orgs/{org}/members/{me}/role"), &[("role", "admin")]).await;
    assert_eq!(alone.status, 409, "{}", alone.html);
    assert!(alone.html.contains("must keep an owner"), "{}", alone.html);

    // End the member's sessions here.
    let ended = owner.submit(&members, &format!("/orgs/{org}/members/{mia}/revoke-sessions"), &[]).await;
    assert_eq!(ended.location.as_deref(), Some(format!("/orgs/{org}/members?notice=member-sessions-revoked").as_str()));
    assert_ne!(app.get(&format!("/api/v1/orgs/{org}"), Some(&mia_token)).await.status, 200, "that session is cut off");

    // Removal goes through a confirmation page.
    let confirm = owner.get(&format!("/orgs/{org}/members/{mia}/remove")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains("mia@example.com") && confirm.html.contains("id=\"confirm\""));
    let no_csrf = owner.post(&format!("/orgs/{org}/members/{mia}/remove"), &[]).await;
    assert_eq!(no_csrf.status, 403);
    assert!(table(&owner.get(&members).await.html, "members").contains("mia@example.com"), "still a member");
    let removed = owner.post(&format!("/orgs/{org}/members/{mia}/remove"), &[("_csrf", &confirm.csrf())]).await;
    assert_eq!(removed.location.as_deref(), Some(format!("/orgs/{org}/members?notice=member-removed").as_str()));
    assert!(!table(&owner.get(&members).await.html, "members").contains("mia@example.com"));
    assert_eq!(owner.get(&format!("/orgs/{org}/members/{mia}/remove")).await.status, 404, "no longer a member");
    assert_eq!(owner.get(&format!("/orgs/{org}/members/garbage/remove")).await.status, 404);
}

#[tokio::test]
async fn console_team_pages_refuse_other_roles_and_hide_other_tenants() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme Secret Name").await;
    owner
        .submit(
            &format!("/orgs/{org}/members"),
            &format!("/orgs/{org}/invitations"),
            &[("email", "pat@example.com"), ("role", "member")],
        )
        .await;
    let before = app.snapshot().await;

    // A viewer and a contractor see the members, not the forms, and an invitation is a 403 page.
    for (email, role) in [("vic@example.com", "viewer"), ("cora@example.com", "contractor")] {
        member_with_role(&app, &org, email, role).await;
        let browser = ConsoleClient::new(&app);
        browser.sign_in(email).await;
        let page = browser.get(&format!("/orgs/{org}/members")).await;
        assert_eq!(page.status, 200, "{role}: {}", page.html);
        assert!(table(&page.html, "members").contains("owner@example.com"));
        assert!(!page.html.contains("id=\"invitations\"") && !page.html.contains("pat@example.com"), "{role}");
        assert!(!page.html.contains("id=\"invite\""), "{role}");
        let refused = browser
            .post(
                &format!("/orgs/{org}/invitations"),
                &[("_csrf", &page.csrf()), ("email", "eve@example.com"), ("role", "viewer")],
            )
            .await;
        assert!(is_error_page(&refused, 403), "{role}: {}", refused.html);
        for path in ["access-review", "audit", "api-keys", "secrets", "keys"] {
            let denied = browser.get(&format!("/orgs/{org}/{path}")).await;
            assert!(is_error_page(&denied, 403), "{role} {path}: {}", denied.status);
        }
        assert_eq!(browser.get(&format!("/orgs/{org}/roles")).await.status, 200, "everyone sees the matrix");
    }
    assert!(app.mails_to("eve@example.com").is_empty());

    // Another organization's owner: every page and form of this one is the console's 404.
    let (stranger, _, _) = console_owner(&app, "stranger@example.com", "Elsewhere").await;
    let before_stranger = app.snapshot().await;
    let csrf = stranger.get("/orgs").await.csrf();
    for path in ["members", "roles", "access-review", "audit", "api-keys", "secrets", "keys"] {
        let page = stranger.get(&format!("/orgs/{org}/{path}")).await;
        assert!(is_error_page(&page, 404), "{path}: {}", page.status);
        assert!(!page.html.contains("Acme Secret Name") && !page.html.contains("owner@example.com"), "{path} leaks");
    }
    for (path, fields) in [
        ("invitations", vec![("email", "eve@example.com"), ("role", "viewer")]),
        ("roles", vec![("name", "spy"), ("permissions", "org.read")]),
        ("secrets", vec![("name", "planted"), ("value", "x")]),
        ("api-keys", vec![("name", "spy"), ("permissions", "org.read"), ("current_password", PASSWORD)]),
    ] {
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend(fields);
        let answer = stranger.post(&format!("/orgs/{org}/{path}"), &all).await;
        assert!(is_error_page(&answer, 404), "POST {path}: {} {}", answer.status, answer.html);
        assert!(!answer.html.contains("Acme Secret Name"));
    }
    assert_eq!(stranger.get("/orgs/org_garbage/members").await.status, 404);
    let after = app.snapshot().await;
    let tenant_tables = |s: &[(String, i64, String)]| -> Vec<(String, i64, String)> {
        s.iter().filter(|(_, _, digest)| !digest.is_empty()).cloned().collect()
    };
    assert_eq!(tenant_tables(&after), tenant_tables(&before_stranger), "the stranger wrote nothing in any tenant");
    assert_eq!(
        tenant_tables(&before).iter().find(|(t, ..)| t == "invitations"),
        tenant_tables(&after).iter().find(|(t, ..)| t == "invitations"),
        "no refused invitation was written"
    );
}

#[tokio::test]
async fn console_roles_matrix_custom_roles_and_access_review() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let (_, lee) = member_with_role(&app, &org, "lee@example.com", "member").await;
    let roles = format!("/orgs/{org}/roles");
    let page = owner.get(&roles).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let matrix = table(&page.html, "role-matrix");
    assert!(matrix.contains("<th scope=\"col\">owner</th>") && matrix.contains("<th scope=\"col\">viewer</th>"));
    assert!(matrix.contains("<th scope=\"row\"><code>members.manage</code>"));
    // 18 permissions × 6 roles, each cell says allowed or not in words.
    let allowed = matrix.matches("<span class=\"visually-hidden\">allowed</span>").count();
    let denied = matrix.matches("<span class=\"visually-hidden\">not allowed</span>").count();
    assert_eq!(allowed + denied, 18 * 6);
    let api = app.get(&format!("/api/v1/orgs/{org}/roles"), Some(&app.login("owner@example.com").await)).await;
    let from_api: usize =
        api.body["items"].as_array().unwrap().iter().map(|r| r["permissions"].as_array().unwrap().len()).sum();
    assert_eq!(allowed, from_api, "the same data as the API");

    // Bad input, and a form without its token: nothing written.
    let bad = owner.submit(&roles, &roles, &[("name", "Site Lead"), ("permissions", "org.read")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains("id=\"role-name-error\"") && bad.html.contains("value=\"org.read\" checked"));
    let unknown = owner.submit(&roles, &roles, &[("name", "site_lead"), ("permissions", "org.everything")]).await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.html.contains("id=\"role-permissions-error\""), "{}", unknown.html);
    assert_eq!(owner.post(&roles, &[("name", "site_lead"), ("permissions", "org.read")]).await.status, 403);
    assert_eq!(app.count("custom_roles").await, 0);

    let made = owner
        .submit(
            &roles,
            &roles,
            &[
                ("name", "site_lead"),
                ("description", "Runs a site"),
                ("permissions", "org.read"),
                ("permissions", "records.read_all"),
            ],
        )
        .await;
    assert_eq!(made.location.as_deref(), Some(format!("{roles}?notice=role-created").as_str()), "{}", made.html);
    let page = owner.get(&roles).await;
    assert!(table(&page.html, "role-matrix").contains("site_lead <span class=\"muted\">(custom)</span>"));
    let again = owner.submit(&roles, &roles, &[("name", "site_lead"), ("permissions", "org.read")]).await;
    assert_eq!(again.status, 409);
    let delete = paths_with(&page.html, &format!("/orgs/{org}/roles/rol_"));
    assert_eq!(delete.len(), 1);
    let role_id = delete[0].trim_start_matches(&format!("/orgs/{org}/roles/")).trim_end_matches("/delete").to_owned();

    // Give it to a member through the members page; the table names it.
    let members = format!("/orgs/{org}/members");
    assert!(
        owner.get(&members).await.html.contains(&format!("<option value=\"{role_id}\">site_lead (custom)</option>"))
    );
    let given = owner.submit(&members, &format!("/orgs/{org}/members/{lee}/role"), &[("role", &role_id)]).await;
    assert_eq!(given.status, 303, "{}", given.html);
    let page = owner.get(&members).await;
    assert!(page.html.contains(&format!("<option value=\"{role_id}\" selected>site_lead (custom)</option>")));

    // Held roles are not deleted; the page says why.
    let confirm = owner.get(&delete[0]).await;
    assert!(confirm.status == 200 && confirm.html.contains("1 member(s) hold it"), "{}", confirm.html);
    let held = owner.post(&delete[0], &[("_csrf", &confirm.csrf())]).await;
    assert_eq!(held.status, 409);
    assert!(held.html.contains("id=\"roles-problem\""));

    // The access review, and its CSV from the API with the same cookie.
    let review = owner.get(&format!("/orgs/{org}/access-review")).await;
    assert_eq!(review.status, 200);
    let rows = table(&review.html, "access-review");
    assert!(
        rows.contains("lee@example.com") && rows.contains("site_lead (custom)") && rows.contains("records.read_all")
    );
    let csv_link = href_of(&review.html, "access-review-csv").expect("CSV link");
    assert_eq!(csv_link, format!("/api/v1/orgs/{org}/access-review?format=csv"));
    let csv = owner.http.get(format!("{}{csv_link}", owner.base)).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("user_id,email,name,role") && csv.contains("lee@example.com"), "{csv}");

    owner.submit(&members, &format!("/orgs/{org}/members/{lee}/role"), &[("role", "member")]).await;
    let deleted = owner.submit(&delete[0], &delete[0], &[]).await;
    assert_eq!(deleted.location.as_deref(), Some(format!("{roles}?notice=role-deleted").as_str()));
    assert_eq!(app.count("custom_roles").await, 0);
    assert_eq!(owner.get(&delete[0]).await.status, 404);
    assert_eq!(owner.get(&format!("/orgs/{org}/roles/nonsense/delete")).await.status, 404);
}

#[tokio::test]
async fn console_audit_log_lists_filters_pages_verifies_and_links_the_exports() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let members = format!("/orgs/{org}/members");
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        let sent =
            owner.submit(&members, &format!("/orgs/{org}/invitations"), &[("email", email), ("role", "member")]).await;
        assert_eq!(sent.status, 303);
    }
    let (_, other_org, _) = console_owner(&app, "other@example.com", "Other").await;

    let audit = format!("/orgs/{org}/audit");
    let page = owner.get(&format!("{audit}?verify=1")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("<span class=\"badge ok\" id=\"chain-status\">Chain verified</span>"), "{}", page.html);
    // Without ?verify=1 the list does not wait for the chain: htmx fetches the badge after.
    let quick = owner.get(&audit).await;
    assert!(quick.html.contains("hx-get=\"/orgs/") && !quick.html.contains("id=\"chain-status\""));
    let badge = owner.get(&format!("{audit}/chain")).await;
    assert!(badge.html.contains("Chain verified") && !badge.html.contains("<html"), "{}", badge.html);
    let events = table(&page.html, "audit-events");
    assert!(
        events.contains("<tr data-action=\"user.invited\">") && events.contains("<tr data-action=\"org.created\">")
    );
    assert!(events.contains("<details>") && events.contains("&#34;role&#34;: &#34;member&#34;"), "pretty JSON details");
    assert!(!events.contains(&other_org), "only this organization's events");

    // Filters are the API's: one action; a bad actor id is shown next to its field.
    let filtered = owner.get(&format!("{audit}?action=user.invited&actor=&notice=x")).await;
    assert_eq!(filtered.status, 200);
    let rows = table(&filtered.html, "audit-events");
    assert_eq!(rows.matches("<tr data-action=").count(), 3);
    assert_eq!(rows.matches("<tr data-action=\"user.invited\">").count(), 3);
    assert!(filtered.html.contains("value=\"user.invited\""));
    let bad = owner.get(&format!("{audit}?actor=garbage")).await;
    assert_eq!(bad.status, 400);
    assert!(bad.html.contains("id=\"actor-error\"") && bad.html.contains("aria-invalid=\"true\""));
    let dated = owner.get(&format!("{audit}?from=2000-01-01&to=2999-01-01&action=user.invited")).await;
    assert_eq!(table(&dated.html, "audit-events").matches("<tr data-action=").count(), 3, "dates are accepted");

    // Older events by the API's cursor, filters kept.
    let first = owner.get(&format!("{audit}?action=user.invited&limit=2")).await;
    assert_eq!(table(&first.html, "audit-events").matches("<tr data-action=").count(), 2);
    let older = href_of(&first.html, "older-events").expect("older events link");
    assert!(older.contains("cursor=") && older.contains("action=user.invited"), "{older}");
    let second = owner.get(&older).await;
    assert_eq!(table(&second.html, "audit-events").matches("<tr data-action=").count(), 1);
    assert!(href_of(&second.html, "older-events").is_none() && href_of(&second.html, "newest-events").is_some());

    // Exports and the checkpoint are the API's, with the session cookie.
    let csv = href_of(&page.html, "export-csv").unwrap();
    assert_eq!(csv, format!("/api/v1/orgs/{org}/audit-events/export?format=csv"));
    assert_eq!(
        href_of(&page.html, "export-jsonl").unwrap(),
        format!("/api/v1/orgs/{org}/audit-events/export?format=jsonl")
    );
    assert_eq!(
        href_of(&page.html, "latest-checkpoint").unwrap(),
        format!("/api/v1/orgs/{org}/audit-checkpoints/latest")
    );
    let filtered_csv = href_of(&filtered.html, "export-csv").unwrap();
    assert!(filtered_csv.ends_with("format=csv&action=user.invited"), "{filtered_csv}");
    let download = owner.http.get(format!("{}{filtered_csv}", owner.base)).send().await.unwrap();
    assert_eq!(download.status(), 200);
    let text = download.text().await.unwrap();
    assert_eq!(text.lines().count(), 4, "a header and the three invitations: {text}");

    // A changed event breaks the chain, and the badge says where.
    let tenant = org.parse::<OrgId>().unwrap().as_uuid();
    app.admin()
        .await
        .execute(
            "UPDATE palisade.audit_events SET details = '{\"forged\": true}' \
             WHERE id = (SELECT event_id FROM palisade.audit_chain WHERE tenant_id = $1 AND seq = 2)",
            &[&tenant],
        )
        .await
        .unwrap();
    let broken = owner.get(&format!("{audit}/chain")).await;
    assert!(
        broken.html.contains("<span class=\"badge bad\" id=\"chain-status\">Chain broken at position 2</span>"),
        "{}",
        broken.html
    );
}

#[tokio::test]
async fn console_secrets_are_write_only_and_the_key_status_shows() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let secrets = format!("/orgs/{org}/secrets");
    let value = "sk_live_do-not-show-me-4242";

    let bad = owner.submit(&secrets, &secrets, &[("name", "9 lives"), ("value", value)]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains("id=\"secret-name-error\"") && !bad.html.contains(value), "the value is never echoed");
    let empty = owner.submit(&secrets, &secrets, &[("name", "stripe_key"), ("value", "")]).await;
    assert!(empty.status == 422 && empty.html.contains("id=\"secret-value-error\""));
    assert_eq!(owner.post(&secrets, &[("name", "stripe_key"), ("value", value)]).await.status, 403);
    assert_eq!(app.count("secrets").await, 0, "nothing written");

    let saved = owner.submit(&secrets, &secrets, &[("name", "stripe_key"), ("value", value)]).await;
    assert_eq!(saved.location.as_deref(), Some(format!("{secrets}?notice=secret-saved").as_str()), "{}", saved.html);
    let page = owner.get(&format!("{secrets}?notice=secret-saved")).await;
    let listed = table(&page.html, "secrets");
    assert!(listed.contains("<code>stripe_key</code>") && listed.contains("dek_"), "{listed}");
    assert!(page.html.contains("type=\"password\"") && !page.html.contains(value));
    let twice = owner.submit(&secrets, &secrets, &[("name", "stripe_key"), ("value", "other")]).await;
    assert_eq!(twice.status, 409);
    assert!(twice.html.contains("id=\"secret-name-error\""));

    let replace = format!("/orgs/{org}/secrets/stripe_key/replace");
    let blank = owner.submit(&secrets, &replace, &[("value", "")]).await;
    assert_eq!(blank.status, 422);
    assert!(blank.html.contains("id=\"replace-stripe_key-error\"") && blank.html.contains("<details open>"));
    let replaced = owner.submit(&secrets, &replace, &[("value", "sk_live_second-value-99")]).await;
    assert_eq!(replaced.status, 303);
    assert_eq!(
        owner.submit(&secrets, &format!("/orgs/{org}/secrets/nope/replace"), &[("value", "x")]).await.status,
        404
    );

    // No page shows either value: the list, the audit log, the key status.
    for path in [secrets.clone(), format!("/orgs/{org}/audit"), format!("/orgs/{org}/keys")] {
        let page = owner.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.html.contains(value) && !page.html.contains("second-value"), "{path} shows a secret");
    }
    let keys = owner.get(&format!("/orgs/{org}/keys")).await;
    assert!(
        keys.html.contains("id=\"current-key\"") && table(&keys.html, "data-keys").contains("active"),
        "{}",
        keys.html
    );
    assert!(keys.html.contains("Next scheduled rotation"));

    let confirm = owner.get(&format!("/orgs/{org}/secrets/stripe_key/delete")).await;
    assert!(confirm.status == 200 && confirm.html.contains("Delete the secret stripe_key?"));
    let deleted = owner.post(&format!("/orgs/{org}/secrets/stripe_key/delete"), &[("_csrf", &confirm.csrf())]).await;
    assert_eq!(deleted.location.as_deref(), Some(format!("{secrets}?notice=secret-deleted").as_str()));
    assert_eq!(app.count("secrets").await, 0);
    assert_eq!(owner.get(&format!("/orgs/{org}/secrets/stripe_key/delete")).await.status, 404);
}

#[tokio::test]
async fn console_api_keys_need_the_password_show_the_key_once_and_revoke() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let keys = format!("/orgs/{org}/api-keys");
    let page = owner.get(&keys).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("name=\"current_password\"") && page.html.contains("id=\"create-key\""));

    let fields = |password: &'static str| {
        vec![("name", "nightly import"), ("permissions", "collections.read"), ("current_password", password)]
    };
    let wrong = owner.submit(&keys, &keys, &fields("not-my-password")).await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.html.contains("id=\"api-key-current-error\""), "{}", wrong.html);
    assert!(wrong.html.contains("value=\"nightly import\""));
    let none = owner.submit(&keys, &keys, &[("name", "nightly"), ("current_password", PASSWORD)]).await;
    assert_eq!(none.status, 422);
    assert!(none.html.contains("id=\"key-permissions-error\""), "{}", none.html);
    let past = owner
        .submit(
            &keys,
            &keys,
            &[
                ("name", "old"),
                ("permissions", "org.read"),
                ("expires_on", "2001-01-01"),
                ("current_password", PASSWORD),
            ],
        )
        .await;
    assert!(past.status == 422 && past.html.contains("id=\"key-expires-error\""), "{}", past.html);
    assert_eq!(owner.post(&keys, &fields(PASSWORD)).await.status, 403);
    assert_eq!(app.count("api_keys").await, 0, "nothing written");

    let made = owner.submit(&keys, &keys, &fields(PASSWORD)).await;
    assert_eq!(made.status, 200, "{}", made.html);
    assert!(made.html.contains("It is shown only this once"));
    let start = made.html.find("<code id=\"api-key-secret\">").expect("the key") + "<code id=\"api-key-secret\">".len();
    let secret = made.html[start..start + made.html[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("pal_live_"), "{secret}");
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}/collections"), Some(&secret)).await.status, 200, "the key works");

    let page = owner.get(&keys).await;
    let listed = table(&page.html, "api-keys");
    assert!(listed.contains("nightly import") && listed.contains("collections.read"));
    assert!(!page.html.contains(&secret), "never shown again");
    assert!(listed.contains(&secret[..17]), "the prefix tells keys apart");

    let revoke = paths_with(&page.html, &format!("/orgs/{org}/api-keys/key_"));
    assert_eq!(revoke.len(), 1, "{revoke:?}");
    let confirm = owner.get(&revoke[0]).await;
    assert!(confirm.status == 200 && confirm.html.contains("Revoke the API key nightly import?"));
    assert_eq!(owner.post(&revoke[0], &[]).await.status, 403);
    let revoked = owner.post(&revoke[0], &[("_csrf", &confirm.csrf())]).await;
    assert_eq!(revoked.location.as_deref(), Some(format!("{keys}?notice=key-revoked").as_str()));
    assert_eq!(app.get(&format!("/api/v1/orgs/{org}/collections"), Some(&secret)).await.status, 401);
    assert!(table(&owner.get(&keys).await.html, "api-keys").contains("revoked"));
    assert_eq!(owner.get(&revoke[0]).await.status, 404, "already revoked");
}
