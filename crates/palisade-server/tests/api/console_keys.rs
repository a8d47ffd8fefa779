//! Security keys in the console, in real headless Chromium with a virtual authenticator
//! (WebDriver's WebAuthn extension): registration on the account page, then the second step.

use palisade_testkit::{Browser, PASSWORD, TestApp};

use crate::console_support::sign_in;

#[tokio::test]
async fn console_security_key_registration_and_sign_in_in_chromium() {
    let app = TestApp::spawn_for_browser().await;
    let browser = Browser::start("security-key").await;
    browser.add_virtual_authenticator().await;
    app.user("kim@example.com").await;
    sign_in(&browser, &app, "kim@example.com", "sign-in").await;
    browser.goto(&app.url("/account")).await;
    browser.fill("#key_name", "Desk key").await;
    browser.fill("#key-add-current-password", PASSWORD).await;
    browser.submit_form("form[action='/account/keys/start'] button[type=submit]").await;
    browser.wait_for("#register-key").await;
    browser.screenshot("register-key").await;
    browser.submit_form("#register-key").await;
    browser.wait_for("#security-keys").await;
    assert!(browser.text("#security-keys").await.contains("Desk key"), "the key is listed");
    browser.screenshot("key-registered").await;

    browser.submit_form("form[action='/logout'] button[type=submit]").await;
    sign_in(&browser, &app, "kim@example.com", "sign-in-again").await;
    browser.wait_for("#use-key").await;
    browser.screenshot("second-step-key").await;
    browser.submit_form("#use-key").await;
    assert_eq!(browser.current_path().await, "/orgs", "signed in with the key");
    browser.screenshot("signed-in-with-key").await;

    // The key is a passkey too: sign in with it alone, no password.
    browser.submit_form("form[action='/logout'] button[type=submit]").await;
    browser.click("details:has(#passkey-start) > summary").await;
    browser.fill("#passkey-email", "kim@example.com").await;
    browser.submit_form("#passkey-start").await;
    browser.wait_for("#use-passkey").await;
    browser.screenshot("passkey-sign-in").await;
    browser.submit_form("#use-passkey").await;
    assert_eq!(browser.current_path().await, "/orgs", "signed in with the passkey alone");
    browser.close().await;
}
