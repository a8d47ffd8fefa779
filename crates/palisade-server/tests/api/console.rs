//! The web console's own pages over real HTTP: sign-in, sign-up and email confirmation, the
//! second step with TOTP, organizations and settings, the account page — each with its success,
//! bad input, missing CSRF token, and another tenant's ids.

use palisade_testkit::{PASSWORD, TestApp, link_token};

use crate::console_support::{ConsoleClient, console_owner, hidden_value};
use crate::mfa::oathtool;

#[tokio::test]
async fn console_sign_in_page_has_strict_csp_and_a_form_cookie() {
    let app = TestApp::spawn().await;
    let answer = app.get("/login", None).await;
    assert_eq!(answer.status, 200);
    let csp = answer.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'")
    );
    assert!(answer.header("set-cookie").is_some_and(|c| c.contains("palisade_form=") && c.contains("HttpOnly")));
    assert!(!answer.text.contains("<script>") && !answer.text.contains(" style="), "no inline script or style");
    assert!(answer.text.contains("<label for=\"email\">"));
}

#[tokio::test]
async fn console_sign_in_success_wrong_password_and_missing_csrf() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let sessions_before = app.count("sessions").await;

    let browser = ConsoleClient::new(&app);
    let wrong =
        browser.submit("/login", "/login", &[("email", "ada@example.com"), ("password", "not-the-password")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.html.contains("The email or password is not correct."));

    // The same form without its token: refused before any password is checked.
    let forged = browser.post("/login", &[("email", "ada@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(forged.status, 403);
    assert!(forged.html.contains("This form cannot be accepted"));
    // A token from another browser does not fit this browser's form cookie.
    let other = ConsoleClient::new(&app);
    let foreign = other.get("/login").await.csrf();
    let crossed =
        browser.post("/login", &[("_csrf", &foreign), ("email", "ada@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(crossed.status, 403);
    assert_eq!(app.count("sessions").await, sessions_before, "no session was opened");

    browser.sign_in("ada@example.com").await;
    assert_eq!(app.count("sessions").await, sessions_before + 1);
    let orgs = browser.get("/orgs").await;
    assert_eq!(orgs.status, 200);
    assert!(orgs.html.contains("Create an organization"));
}

#[tokio::test]
async fn console_sign_up_confirm_email_and_create_an_organization() {
    let app = TestApp::spawn().await;
    let browser = ConsoleClient::new(&app);
    let weak = browser
        .submit("/signup", "/signup", &[("name", "Grace"), ("email", "grace@example.com"), ("password", "short")])
        .await;
    assert_eq!(weak.status, 422);
    assert!(weak.html.contains("id=\"password-error\""), "the error sits next to the field: {}", weak.html);
    assert_eq!(app.count("users").await, 0, "nothing written");

    let done = browser
        .submit("/signup", "/signup", &[("name", "Grace"), ("email", "grace@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(done.status, 200);
    assert!(done.html.contains("Check your email"));
    let mail = app.wait_for_mail("grace@example.com", "Confirm your email address").await;
    let token = link_token(&mail, "/verify-email").expect("link");

    // Opening the link only shows a button (a mail scanner's GET uses nothing up).
    let landing = browser.get(&format!("/verify-email?token={token}")).await;
    assert_eq!(landing.status, 200);
    assert_eq!(hidden_value(&landing.html, "token").as_deref(), Some(token.as_str()));
    let confirmed = browser.post("/verify-email", &[("_csrf", &landing.csrf()), ("token", &token)]).await;
    assert_eq!(confirmed.status, 303);
    let reused = browser.post("/verify-email", &[("_csrf", &landing.csrf()), ("token", &token)]).await;
    assert_eq!(reused.status, 400, "single use");

    browser.sign_in("grace@example.com").await;
    let orgs_before = app.count("orgs").await;
    let no_csrf = browser.post("/orgs", &[("name", "Forged")]).await;
    assert_eq!(no_csrf.status, 403);
    let empty = browser.submit("/orgs", "/orgs", &[("name", "")]).await;
    assert_eq!(empty.status, 422);
    assert!(empty.html.contains("id=\"name-error\""));
    assert_eq!(app.count("orgs").await, orgs_before, "nothing written");

    let created = browser.submit("/orgs", "/orgs", &[("name", "<script>alert('org')</script> Ltd")]).await;
    assert_eq!(created.status, 303, "{}", created.html);
    let list = browser.get("/orgs").await;
    assert!(list.html.contains("&#60;script&#62;alert(&#39;org&#39;)"), "{}", list.html);
    assert!(!list.html.contains("<script>alert"), "an org name is text, never markup");
}

#[tokio::test]
async fn console_settings_save_refuse_bad_input_and_hide_other_tenants() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "owner@example.com", "Acme").await;
    let saved = owner
        .submit(
            &format!("/orgs/{org}/settings"),
            &format!("/orgs/{org}/settings"),
            &[
                ("name", "Acme Field"),
                ("mfa_policy", "off"),
                ("session_idle_minutes", "30"),
                ("audit_retention_days", "400"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let page = owner.get(&format!("/orgs/{org}/settings")).await;
    assert!(page.html.contains("value=\"Acme Field\"") && page.html.contains("value=\"400\""));

    let bad = owner
        .submit(
            &format!("/orgs/{org}/settings"),
            &format!("/orgs/{org}/settings"),
            &[("name", "Acme Field"), ("mfa_policy", "sometimes"), ("audit_retention_days", "12")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains("field-error"), "{}", bad.html);
    let still = owner.get(&format!("/orgs/{org}/settings")).await;
    assert!(still.html.contains("value=\"400\""), "nothing written");

    // Another organization's member: the same 404 page as for an id that does not exist.
    let (stranger, _, _) = console_owner(&app, "stranger@example.com", "Other").await;
    for path in
        [format!("/orgs/{org}/settings"), format!("/orgs/{org}/collections"), "/orgs/org_nonsense/settings".into()]
    {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(!answer.html.contains("Acme"), "nothing about the organization leaks");
    }
    let forged =
        stranger.submit("/orgs", &format!("/orgs/{org}/settings"), &[("name", "Taken"), ("mfa_policy", "off")]).await;
    assert_eq!(forged.status, 404);
    let page = owner.get(&format!("/orgs/{org}/settings")).await;
    assert!(page.html.contains("value=\"Acme Field\""));
}

#[tokio::test]
async fn console_totp_enrolment_then_sign_in_with_the_second_step() {
    let app = TestApp::spawn().await;
    app.user("tess@example.com").await;
    let browser = ConsoleClient::new(&app);
    browser.sign_in("tess@example.com").await;

    let started = browser.submit("/account", "/account/totp/start", &[("current_password", PASSWORD)]).await;
    assert_eq!(started.status, 200, "{}", started.html);
    assert!(started.html.contains("src=\"data:image/svg+xml;base64,"), "a QR code");
    let secret = hidden_value(&started.html, "secret").expect("secret");
    let csrf = started.csrf();
    let wrong = browser.post("/account/totp", &[("_csrf", &csrf), ("code", "000000")]).await;
    assert_eq!(wrong.status, 422);
    let confirmed = browser.post("/account/totp", &[("_csrf", &csrf), ("code", &oathtool(&app, &secret))]).await;
    assert_eq!(confirmed.status, 200);
    assert!(
        confirmed.html.contains("id=\"backup-codes\"")
            && confirmed.html.contains("download=\"palisade-backup-codes.txt\"")
    );

    let out = browser.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.get("/orgs").await.status, 303, "signed out");

    let step = browser.submit("/login", "/login", &[("email", "tess@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(step.status, 200, "the second step, not a session");
    assert!(step.html.contains("action=\"/login/mfa\"") && !step.html.contains("id=\"use-key\""));
    app.clock.advance(time::Duration::seconds(31));
    let bad = browser.post("/login/mfa", &[("_csrf", &step.csrf()), ("code", "123456")]).await;
    assert_eq!(bad.status, 401);
    let good = browser.post("/login/mfa", &[("_csrf", &step.csrf()), ("code", &oathtool(&app, &secret))]).await;
    assert_eq!(good.status, 303, "{}", good.html);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);

    // A backup code works once in place of the app's code.
    let backup =
        confirmed.html.split("<li><code>").nth(1).and_then(|rest| rest.split('<').next()).expect("a backup code");
    assert_eq!(browser.post("/logout", &[("_csrf", &account.csrf())]).await.status, 303);
    let step = browser.submit("/login", "/login", &[("email", "tess@example.com"), ("password", PASSWORD)]).await;
    let with_backup = browser.post("/login/mfa", &[("_csrf", &step.csrf()), ("code", backup)]).await;
    assert_eq!(with_backup.status, 303, "{}", with_backup.html);
    let account = browser.get("/account").await;
    assert_eq!(browser.post("/logout", &[("_csrf", &account.csrf())]).await.status, 303);
    let step = browser.submit("/login", "/login", &[("email", "tess@example.com"), ("password", PASSWORD)]).await;
    let reused = browser.post("/login/mfa", &[("_csrf", &step.csrf()), ("code", backup)]).await;
    assert_eq!(reused.status, 401, "a backup code is single use");
}

#[tokio::test]
async fn console_account_changes_need_the_current_password() {
    let app = TestApp::spawn().await;
    app.user("pat@example.com").await;
    let browser = ConsoleClient::new(&app);
    browser.sign_in("pat@example.com").await;
    let wrong = browser
        .submit(
            "/account",
            "/account/password",
            &[("current_password", "guess-guess-guess"), ("new_password", "another-long-passphrase-77")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.html.contains("password-current-error"), "{}", wrong.html);
    let changed = browser
        .submit(
            "/account",
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", "another-long-passphrase-77")],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.html);
    let login = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"email": "pat@example.com", "password": "another-long-passphrase-77"})),
        )
        .await;
    assert_eq!(login.status, 200);

    let account = browser.get("/account").await;
    assert!(account.html.contains("This browser"));
    let no_csrf = browser.post("/account/sessions/revoke-others", &[]).await;
    assert_eq!(no_csrf.status, 403);
    let revoked = browser.post("/account/sessions/revoke-others", &[("_csrf", &account.csrf())]).await;
    assert_eq!(revoked.status, 303);
}

#[tokio::test]
async fn console_forgotten_password_and_reset() {
    let app = TestApp::spawn().await;
    app.user("rhea@example.com").await;
    let browser = ConsoleClient::new(&app);
    let asked = browser.submit("/forgot-password", "/forgot-password", &[("email", "rhea@example.com")]).await;
    assert_eq!(asked.location.as_deref(), Some("/login?notice=reset-sent"));
    let unknown = browser.submit("/forgot-password", "/forgot-password", &[("email", "nobody@example.com")]).await;
    assert_eq!(unknown.location, asked.location, "the same answer for an unknown address");
    let mail = app.wait_for_mail("rhea@example.com", "Reset your password").await;
    let token = link_token(&mail, "/reset-password").expect("reset link");
    let form = browser.get(&format!("/reset-password?token={token}")).await;
    assert_eq!(form.status, 200);
    let weak =
        browser.post("/reset-password", &[("_csrf", &form.csrf()), ("token", &token), ("password", "short")]).await;
    assert_eq!(weak.status, 422);
    assert!(weak.html.contains("id=\"password-error\""));
    let new_password = "lantern-harbor-quiet-58";
    let done = browser
        .post("/reset-password", &[("_csrf", &form.csrf()), ("token", &token), ("password", new_password)])
        .await;
    assert_eq!(done.location.as_deref(), Some("/login?notice=reset"));
    let again = browser
        .post("/reset-password", &[("_csrf", &form.csrf()), ("token", &token), ("password", new_password)])
        .await;
    assert_eq!(again.status, 400, "single use");
    let login = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"email": "rhea@example.com", "password": new_password})),
        )
        .await;
    assert_eq!(login.status, 200);
}

#[tokio::test]
async fn console_email_change_is_confirmed_from_the_new_address() {
    let app = TestApp::spawn().await;
    let token = app.user("old@example.com").await;
    let browser = ConsoleClient::new(&app);
    browser.sign_in("old@example.com").await;
    let bad = browser
        .submit("/account", "/account/email", &[("current_password", PASSWORD), ("new_email", "not an address")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains("id=\"new-email-error\""), "{}", bad.html);
    let asked = browser
        .submit("/account", "/account/email", &[("current_password", PASSWORD), ("new_email", "new@example.com")])
        .await;
    assert_eq!(asked.status, 200, "{}", asked.html);
    let mail = app.wait_for_mail("new@example.com", "Confirm your new email address").await;
    let link = link_token(&mail, "/confirm-email-change").expect("link");
    let landing = browser.get(&format!("/confirm-email-change?token={link}")).await;
    assert_eq!(landing.status, 200);
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.body["email"], "old@example.com", "the link alone changed nothing");
    let done = browser.post("/confirm-email-change", &[("_csrf", &landing.csrf()), ("token", &link)]).await;
    assert_eq!(done.location.as_deref(), Some("/login?notice=email-changed"));
    let me = app.get("/api/v1/me", Some(&app.login("new@example.com").await)).await;
    assert_eq!(me.body["email"], "new@example.com");
}

#[tokio::test]
async fn console_credential_forms_share_the_strict_auth_budget() {
    use palisade_server::config::{Config, RateLimits};
    let limits = RateLimits { anonymous: 100, auth: 3, ..RateLimits::default() };
    let app = TestApp::spawn_with(Config { hash_workers: Some(2), rate_limits: limits, ..Config::default() }).await;
    let browser = ConsoleClient::new(&app);
    let csrf = browser.get("/login").await.csrf();
    for _ in 0..3 {
        let answer = browser
            .post("/login", &[("_csrf", &csrf), ("email", "x@example.com"), ("password", "wrong-password")])
            .await;
        assert_eq!(answer.status, 401);
    }
    let refused =
        browser.post("/login", &[("_csrf", &csrf), ("email", "x@example.com"), ("password", "wrong-password")]).await;
    assert_eq!(refused.status, 429, "the console's sign-in counts against the same per-address budget");
    let page = browser
        .http
        .post(format!("{}/login", browser.base))
        .header("accept", "text/html")
        .form(&[("_csrf", csrf.as_str()), ("email", "x@example.com"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "a page for a person");
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.text().await.unwrap().contains("Too many requests"));
    // Static assets are never limited; pages that take no credential use the ordinary budget.
    for _ in 0..5 {
        assert_eq!(browser.get("/static/console.css").await.status, 200);
    }
    assert_eq!(browser.get("/signup").await.status, 200);
}

#[tokio::test]
async fn console_live_schema_check_needs_a_member_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let (owner, org, _) = console_owner(&app, "sam@example.com", "Schemas").await;
    let form = format!("/orgs/{org}/collections/new");
    let check = format!("/orgs/{org}/schema-check");
    let valid =
        owner.submit(&form, &check, &[("schema", r#"{"type":"object","properties":{"a":{"type":"string"}}}"#)]).await;
    assert_eq!(valid.status, 200);
    assert!(valid.html.contains("The schema is valid."));
    let broken = owner.submit(&form, &check, &[("schema", "{ nope")]).await;
    assert!(broken.html.contains("Not valid JSON"), "{}", broken.html);
    let wrong =
        owner.submit(&form, &check, &[("schema", r#"{"type":"object","properties":{"a":{"type":"strin"}}}"#)]).await;
    assert!(wrong.html.contains("field-error") && !wrong.html.contains("valid."), "{}", wrong.html);
    let markup = owner.submit(&form, &check, &[("schema", "<script>alert(1)</script>")]).await;
    assert!(!markup.html.contains("<script>alert"), "problems are text");
    assert_eq!(owner.post(&check, &[("schema", "{}")]).await.status, 403, "no CSRF token");
    assert_eq!(app.count("collections").await, 0, "a check stores nothing");
    let (stranger, _, _) = console_owner(&app, "eve@example.com", "Elsewhere").await;
    let theirs = stranger.submit("/orgs", &check, &[("schema", "{}")]).await;
    assert_eq!(theirs.status, 404, "only the organization's members can use its check");
}

#[tokio::test]
async fn console_settings_save_sends_only_what_the_form_changed() {
    let app = TestApp::spawn().await;
    let (owner, org, token) = console_owner(&app, "hold@example.com", "Holdings").await;
    let page = owner.get(&format!("/orgs/{org}/settings")).await;
    // Meanwhile another admin puts the organization under legal hold.
    let held = app
        .send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&token), Some(serde_json::json!({"legal_hold": true})))
        .await;
    assert_eq!(held.status, 200, "{}", held.text);
    // The page opened before only renames: the hold it never showed as set stays set.
    let mut fields: Vec<(String, String)> =
        ["was_name", "was_mfa_policy", "was_session_idle_minutes", "was_audit_retention_days"]
            .iter()
            .map(|name| (name.to_string(), hidden_value(&page.html, name).unwrap_or_default()))
            .collect();
    fields.push(("was_legal_hold".into(), String::new()));
    fields.push(("_csrf".into(), page.csrf()));
    fields.push(("name".into(), "Holdings Renamed".into()));
    fields.push(("mfa_policy".into(), "off".into()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = owner.post(&format!("/orgs/{org}/settings"), &fields).await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let now = app.get(&format!("/api/v1/orgs/{org}"), Some(&token)).await;
    assert_eq!(now.body["name"], "Holdings Renamed");
    assert_eq!(now.body["legal_hold"], true, "a stale page does not undo another admin's hold");
}

#[tokio::test]
async fn console_passkey_start_answers_alike_for_unknown_addresses() {
    let app = TestApp::spawn().await;
    app.user("known@example.com").await;
    let browser = ConsoleClient::new(&app);
    let known = browser.submit("/login", "/login/passkey", &[("email", "known@example.com")]).await;
    let unknown = browser.submit("/login", "/login/passkey", &[("email", "nobody@example.com")]).await;
    for page in [&known, &unknown] {
        assert_eq!(page.status, 200);
        assert!(page.html.contains("id=\"use-passkey\"") && page.html.contains("allowCredentials"));
    }
    let bad = browser.submit("/login", "/login/passkey", &[("email", "not an address")]).await;
    assert_eq!(bad.status, 422);
    assert_eq!(browser.post("/login/passkey", &[("email", "known@example.com")]).await.status, 403, "no CSRF token");
}
