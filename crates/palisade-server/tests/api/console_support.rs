//! Helpers for the console's tests over real HTTP: a browser-like client (cookie store, form
//! posts with the page's CSRF token) signed in through the console's own sign-in form.

use palisade_testkit::{Browser, PASSWORD, TestApp};

/// A client that keeps cookies like a browser and does not follow redirects (tests look at them).
pub struct ConsoleClient {
    pub http: reqwest::Client,
    pub base: String,
}

/// A console answer: status, `Location` (for redirects) and the HTML body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub html: String,
}

impl Page {
    /// The value of the first `<input name="_csrf" value="…">` on the page.
    pub fn csrf(&self) -> String {
        hidden_value(&self.html, "_csrf").unwrap_or_else(|| panic!("no _csrf field on the page:\n{}", self.html))
    }
}

/// The value of a hidden input named `name` (the first one).
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

impl ConsoleClient {
    pub fn new(app: &TestApp) -> ConsoleClient {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        ConsoleClient { http, base: app.url("") }
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET sent");
        page(response).await
    }

    /// Posts a form as a browser does (urlencoded), with exactly the given fields.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self.http.post(format!("{}{path}", self.base)).form(fields).send().await.expect("POST sent");
        page(response).await
    }

    /// Opens `form_page`, takes its CSRF token, and posts `fields` plus the token to `action`.
    pub async fn submit(&self, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(form_page).await.csrf();
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Signs in through the console's form (the account has no second factor).
    pub async fn sign_in(&self, email: &str) {
        let answer = self.submit("/login", "/login", &[("email", email), ("password", PASSWORD)]).await;
        assert_eq!(answer.status, 303, "console sign-in: {}", answer.html);
        assert_eq!(answer.location.as_deref(), Some("/"));
    }
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let html = response.text().await.expect("body");
    Page { status, location, html }
}

/// A verified account that owns a new organization, and a console client signed in as it:
/// (client, org id, API bearer token).
pub async fn console_owner(app: &TestApp, email: &str, org_name: &str) -> (ConsoleClient, String, String) {
    let (token, org) = app.owner_of(email, org_name).await;
    let client = ConsoleClient::new(app);
    client.sign_in(email).await;
    (client, org, token)
}

/// Signs in through the console's form in a real browser (a screenshot of the filled form).
pub async fn sign_in(browser: &Browser, app: &TestApp, email: &str, shot: &str) {
    browser.goto(&app.url("/login")).await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.screenshot(shot).await;
    browser.submit_form("form[action='/login'] button[type=submit]").await;
}
