//! The console end to end in real headless Chromium (through chromedriver): the whole journey a
//! new customer takes, stored XSS, a form without its CSRF token, and another tenant's pages.
//! Every page visited is saved as a screenshot under `target/console-screenshots/`.

use palisade_testkit::{Browser, PASSWORD, TestApp, link_token};
use serde_json::json;

use crate::console_support::sign_in;
use crate::mfa::oathtool;

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "title": {"type": "string", "maxLength": 200, "description": "What needs doing"},
    "status": {"type": "string", "enum": ["open", "scheduled", "done"]},
    "amount": {"type": "number"},
    "site_code": {"type": "string", "x-palisade-sensitive": true}
  },
  "required": ["title"]
}"#;

/// An API token for an account with TOTP on: password, then a fresh code.
async fn api_token_with_totp(app: &TestApp, email: &str, secret: &str) -> String {
    app.clock.advance(time::Duration::seconds(31));
    let first = app.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    let challenge = first.body["challenge_token"].as_str().expect("challenge").to_owned();
    let code = oathtool(app, secret);
    let done =
        app.send("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge_token": challenge, "code": code}))).await;
    assert_eq!(done.status, 200, "{}", done.text);
    done.body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn console_journey_in_chromium() {
    let app = TestApp::spawn_for_browser().await;
    let browser = Browser::start("journey").await;
    let owner = "dana@example.com";

    // Sign up, confirm the address from the mail, sign in.
    browser.goto(&app.url("/")).await;
    assert_eq!(browser.current_path().await, "/login");
    browser.screenshot("sign-in").await;
    browser.click("a[href='/signup']").await;
    browser.wait_for("#name").await;
    browser.fill("#name", "Dana Field").await;
    browser.fill("#email", owner).await;
    browser.fill("#password", PASSWORD).await;
    browser.screenshot("sign-up").await;
    browser.submit_form("form[action='/signup'] button[type=submit]").await;
    assert!(browser.page_source().await.contains("Check your email"));
    browser.screenshot("check-your-email").await;
    let mail = app.wait_for_mail(owner, "Confirm your email address").await;
    let token = link_token(&mail, "/verify-email").expect("verification link");
    browser.goto(&app.url(&format!("/verify-email?token={token}"))).await;
    browser.screenshot("confirm-email").await;
    browser.submit_form("form[action='/verify-email'] button[type=submit]").await;
    sign_in(&browser, &app, owner, "sign-in-filled").await;

    // Create the organization.
    assert_eq!(browser.current_path().await, "/orgs");
    browser.screenshot("organizations").await;
    browser.fill("#name", "Acme Field Services").await;
    browser.submit_form("form[action='/orgs'] button[type=submit]").await;
    let path = browser.current_path().await;
    let org = path.strip_prefix("/orgs/").and_then(|p| p.strip_suffix("/collections")).expect("org page").to_owned();
    browser.screenshot("collections-empty").await;

    // Turn on TOTP: QR code, code from an independent implementation, backup codes.
    browser.goto(&app.url("/account")).await;
    browser.screenshot("account").await;
    browser.click("details:has(#start-totp) > summary").await;
    browser.fill("#totp-on-current-password", PASSWORD).await;
    browser.submit_form("#start-totp").await;
    browser.wait_for("img.qr").await;
    browser.screenshot("totp-qr").await;
    let secret = browser.text("#totp-secret").await;
    browser.fill("#code", &oathtool(&app, &secret)).await;
    browser.submit_form("form[action='/account/totp'] button[type=submit]").await;
    browser.wait_for("#backup-codes").await;
    browser.screenshot("backup-codes").await;

    // Sign out, sign in again with the second step.
    browser.submit_form("form[action='/logout'] button[type=submit]").await;
    assert_eq!(browser.current_path().await, "/login");
    browser.screenshot("signed-out").await;
    sign_in(&browser, &app, owner, "sign-in-again").await;
    browser.wait_for("#code").await;
    browser.screenshot("second-step").await;
    app.clock.advance(time::Duration::seconds(31));
    browser.fill("#code", &oathtool(&app, &secret)).await;
    browser.submit_form("form[action='/login/mfa'] button[type=submit]").await;
    assert_eq!(browser.current_path().await, format!("/orgs/{org}/collections"));

    // A collection with a sensitive field.
    browser.click("#new-collection").await;
    browser.wait_for("#create-collection").await;
    // The editor checks the schema while it is typed (htmx posts it to the live check).
    browser.fill("textarea[name=schema]", r#"{"type": "object", "properties": {"a": {"type": "strin"}}}"#).await;
    browser.wait_for("#schema-check .field-error").await;
    browser.screenshot("schema-check-error").await;
    browser.fill("textarea[name=schema]", SCHEMA).await;
    browser.wait_for("#schema-check .ok").await;
    browser.fill("input[name=name]", "jobs").await;
    browser.screenshot("new-collection").await;
    browser.submit_form("#create-collection").await;
    assert_eq!(browser.current_path().await, format!("/orgs/{org}/collections/jobs"));

    // Add, edit and delete a record; a script in a value stays text.
    browser.click("#new-record").await;
    browser.wait_for("#field-title").await;
    browser.fill("#field-title", "<script>alert('xss')</script> Pump repair").await;
    browser.fill("#field-amount", "120.5").await;
    browser.fill("#field-site_code", "GATE-4471").await;
    browser.screenshot("new-record").await;
    browser.submit_form("#save-record").await;
    browser.wait_for("#edit-record").await;
    browser.screenshot("record").await;
    let source = browser.page_source().await;
    assert!(source.contains("&lt;script&gt;alert") || source.contains("&#60;script&#62;alert"), "escaped");
    assert!(browser.client().get_alert_text().await.is_err(), "no script ran");
    browser.click("#edit-record").await;
    browser.wait_for("#field-title").await;
    browser.fill("#field-title", "Pump repair (urgent)").await;
    browser.screenshot("edit-record").await;
    browser.submit_form("#save-record").await;
    browser.wait_for("#delete-record").await;
    assert!(browser.page_source().await.contains("Pump repair (urgent)"));
    browser.click("#delete-record").await;
    browser.wait_for("#confirm-delete").await;
    browser.screenshot("confirm-delete").await;
    browser.submit_form("#confirm-delete").await;
    assert_eq!(browser.current_path().await, format!("/orgs/{org}/collections/jobs"));

    // Those events in the audit log, with the chain verified.
    app.app.seal_audit().await.expect("seal audit chain");
    browser.goto(&app.url(&format!("/orgs/{org}/audit"))).await;
    browser.wait_for("#audit-events").await;
    let audit = browser.page_source().await;
    for action in ["record.created", "record.updated", "record.deleted"] {
        assert!(audit.contains(&format!("data-action=\"{action}\"")), "{action} in the audit log");
    }
    browser.wait_for("#chain-status.ok").await;
    browser.screenshot("audit-log").await;
    assert!(browser.text("#chain-status").await.to_lowercase().contains("verified"));

    // Invite a contractor, who accepts in the same browser after signing in.
    let contractor = "cole@example.com";
    app.user(contractor).await;
    browser.goto(&app.url(&format!("/orgs/{org}/members"))).await;
    browser.fill("#email", contractor).await;
    browser.click("#role option[value=contractor]").await;
    browser.screenshot("invite").await;
    browser.submit_form("#invite").await;
    browser.wait_for("#invitations").await;
    let invitations = browser.text("#invitations").await;
    assert!(invitations.contains(contractor) && invitations.contains("contractor"), "{invitations}");
    browser.screenshot("invited").await;
    let invitation = app.wait_for_mail(contractor, "invited").await;
    let invite_token = link_token(&invitation, "/accept-invite").expect("invitation link");

    // The owner assigns one record to the contractor and keeps another (through the API).
    let owner_token = api_token_with_totp(&app, owner, &secret).await;
    browser.submit_form("form[action='/logout'] button[type=submit]").await;
    sign_in(&browser, &app, contractor, "contractor-sign-in").await;
    browser.goto(&app.url(&format!("/accept-invite?token={invite_token}"))).await;
    browser.screenshot("accept-invitation").await;
    browser.submit_form("form[action='/accept-invite'] button[type=submit]").await;
    let contractor_id = app.send("GET", "/api/v1/me", Some(&app.login(contractor).await), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let records = format!("/api/v1/orgs/{org}/collections/jobs/records");
    let assigned = app
        .send(
            "POST",
            &records,
            Some(&owner_token),
            Some(json!({"data": {"title": "Assigned job"}, "assignees": [contractor_id]})),
        )
        .await;
    assert_eq!(assigned.status, 201, "{}", assigned.text);
    let kept = app.send("POST", &records, Some(&owner_token), Some(json!({"data": {"title": "Owner only job"}}))).await;
    assert_eq!(kept.status, 201, "{}", kept.text);
    browser.goto(&app.url(&format!("/orgs/{org}/collections/jobs"))).await;
    browser.wait_for("#records").await;
    browser.screenshot("contractor-records").await;
    let seen = browser.page_source().await;
    assert!(
        seen.contains("Assigned job") && !seen.contains("Owner only job"),
        "a contractor sees only assigned records"
    );
    let kept_id = kept.body["id"].as_str().unwrap();
    browser.goto(&app.url(&format!("/orgs/{org}/collections/jobs/records/{kept_id}"))).await;
    assert!(!browser.page_source().await.contains("Owner only job"));
    browser.set_viewport(390, 844).await;
    browser.goto(&app.url(&format!("/orgs/{org}/collections/jobs"))).await;
    browser.screenshot("contractor-records-phone").await;
    browser.set_viewport(1280, 900).await;

    // A user of another organization: 404 on every page of the first one.
    browser.submit_form("form[action='/logout'] button[type=submit]").await;
    // Her organization's name carries a script: it is shown as text in the menu and the list.
    let (_, _) = app.owner_of("olga@example.com", "<script>alert('org')</script> Other Co").await;
    sign_in(&browser, &app, "olga@example.com", "other-tenant-sign-in").await;
    browser.goto(&app.url("/orgs")).await;
    let listed = browser.page_source().await;
    assert!(listed.contains("&lt;script&gt;alert") || listed.contains("&#60;script&#62;alert"), "escaped");
    assert!(browser.client().get_alert_text().await.is_err(), "no script ran");
    browser.screenshot("org-name-as-text").await;
    for path in [
        format!("/orgs/{org}/collections"),
        format!("/orgs/{org}/collections/jobs/records/{kept_id}"),
        format!("/orgs/{org}/audit"),
        format!("/orgs/{org}/members"),
    ] {
        browser.goto(&app.url(&path)).await;
        let html = browser.page_source().await;
        if !html.contains("Not found") {
            browser.screenshot("not-a-404").await;
            panic!("{path}: expected the 404 page, got:\n{html}");
        }
        assert!(!html.contains("Acme") && !html.contains("Owner only job"), "{path}: nothing leaks");
    }
    browser.screenshot("other-tenant-404").await;

    // A form whose CSRF token is taken out is refused, and nothing changes.
    browser.goto(&app.url("/orgs")).await;
    browser
        .client()
        .execute("document.querySelector(\"form[action='/orgs'] input[name=_csrf]\").remove()", vec![])
        .await
        .unwrap();
    browser.fill("#name", "Forged Org").await;
    let orgs_before = app.count("orgs").await;
    browser.submit_form("form[action='/orgs'] button[type=submit]").await;
    assert!(browser.page_source().await.contains("This form cannot be accepted"));
    browser.screenshot("csrf-refused").await;
    assert_eq!(app.count("orgs").await, orgs_before);
    browser.close().await;
}
