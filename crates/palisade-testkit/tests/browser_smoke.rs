//! The browser harness end to end: a real headless Chromium fills and posts a form served by a
//! tiny axum app, reads the answer, and leaves screenshots behind.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use palisade_testkit::Browser;

const FORM: &str = "<!doctype html><title>Form</title>\
    <form method=post><input name=x><button>Go</button></form>";

/// Echoes the posted `x`, escaped, in `#echo`.
async fn echo(body: String) -> Html<String> {
    let x = url::form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "x").map(|(_, v)| v).unwrap_or_default();
    let x = x.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    Html(format!("<!doctype html><title>Echo</title><p id=echo>{x}</p>"))
}

#[tokio::test]
async fn fills_and_submits_a_form_and_takes_screenshots() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/form", get(|| async { Html(FORM) }).post(echo));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let browser = Browser::start("browser-smoke").await;
    browser.goto(&format!("http://{addr}/form")).await;
    assert_eq!(browser.current_path().await, "/form");
    let first = browser.screenshot("form").await;

    browser.fill("input[name=x]", "hello <palisade> & co").await;
    browser.submit_form("form button").await;
    assert_eq!(browser.text("#echo").await, "hello <palisade> & co");
    assert!(browser.page_source().await.contains("id=\"echo\""));

    browser.set_viewport(390, 844).await;
    let size = browser.client().execute("return [innerWidth, innerHeight]", vec![]).await.expect("viewport");
    assert_eq!(size, serde_json::json!([390, 844]));
    let second = browser.screenshot("echo-phone").await;

    for (path, n) in [(&first, "01-form.png"), (&second, "02-echo-phone.png")] {
        assert!(path.ends_with(format!("console-screenshots/browser-smoke/{n}")), "{}", path.display());
        let png = std::fs::read(path).expect("screenshot file");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    }
    browser.close().await;
}
