//! Hostile input: script payloads are stored and returned as inert JSON (never HTML, always
//! nosniff under a CSP that runs nothing), and SQL injection strings in every parameter of the
//! records listing change nothing but the answer's emptiness.

use palisade_testkit::TestApp;
use serde_json::json;

use crate::collections::org_with_work_orders;

const XSS: [&str; 4] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(document.cookie)>",
    "javascript:alert(1)",
    "</script><svg/onload=alert(1)>",
];

const SQLI: [&str; 8] = [
    "' OR '1'='1",
    "'; DROP TABLE palisade.records; --",
    "1 OR 1=1",
    "\" OR \"\"=\"",
    "1; SELECT pg_sleep(5)--",
    "') UNION SELECT tenant_id, name FROM palisade.orgs --",
    "%27%20OR%201=1--",
    "\\x00' OR 1=1 /*",
];

fn assert_inert(answer: &palisade_testkit::Answer) {
    let content_type = answer.header("content-type").unwrap_or("");
    assert!(
        content_type == "application/json" || content_type == "application/problem+json" || answer.status == 204,
        "never HTML: {content_type}"
    );
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert!(answer.header("content-security-policy").unwrap().starts_with("default-src 'none'"));
}

#[tokio::test]
async fn script_payloads_are_stored_and_returned_as_inert_json() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    for payload in XSS {
        let created =
            app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": payload, "status": "open"}}))).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_inert(&created);
        let read = app.get(&format!("{records}/{}", created.body["id"].as_str().unwrap()), Some(&owner)).await;
        assert_inert(&read);
        assert_eq!(read.body["data"]["title"], payload, "returned exactly as stored, as data");
    }
    let renamed = app.send("PATCH", &format!("/api/v1/orgs/{org}"), Some(&owner), Some(json!({"name": XSS[0]}))).await;
    assert_inert(&renamed);
    let listed = app.get(&records, Some(&owner)).await;
    assert_inert(&listed);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), XSS.len());
    // Refusals do not reflect the payload back either.
    for payload in XSS {
        let refused = app.get(&format!("/api/v1/orgs/{org}/collections/{}", urlencode(payload)), Some(&owner)).await;
        assert_eq!(refused.status, 404);
        assert_inert(&refused);
        assert!(!refused.text.contains(payload), "{}", refused.text);
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn sql_injection_strings_in_every_listing_parameter_change_nothing() {
    let app = TestApp::spawn().await;
    let (owner, org, records) = org_with_work_orders(&app, "owner@example.com").await;
    let (_, other) = app.owner_of("rival@example.com", "Rival").await;
    for title in ["Roof", "Gutter"] {
        app.send("POST", &records, Some(&owner), Some(json!({"data": {"title": title, "status": "open", "hours": 2}})))
            .await;
    }
    let before = app.snapshot().await;
    let started = std::time::Instant::now();
    for payload in SQLI {
        let p = urlencode(payload);
        let queries = [
            format!("filter[title][eq]={p}"),
            format!("filter[title][contains]={p}"),
            format!("filter[hours][gte]={p}"),
            format!("filter[{p}][eq]=1"),
            format!("filter[title][{p}]=1"),
            format!("sort={p}"),
            format!("limit={p}"),
            format!("cursor={p}"),
            format!("{p}=1"),
        ];
        for query in queries {
            let answer = app.get(&format!("{records}?{query}"), Some(&owner)).await;
            assert!(answer.status == 200 || answer.status == 400, "{query}: {} {}", answer.status, answer.text);
            assert_inert(&answer);
            if answer.status == 200 {
                assert_eq!(answer.body["items"].as_array().unwrap().len(), 0, "{query} matched rows: {}", answer.text);
            }
            // Refusals may name the parameter as given (inert JSON), never the database's view of it.
            for leak in ["syntax error", "SQLSTATE", "relation \"", "pg_catalog", "tokio_postgres"] {
                assert!(!answer.text.contains(leak), "{query}: {}", answer.text);
            }
        }
        // In the path: names and ids that do not parse are simply not found.
        for path in [
            format!("/api/v1/orgs/{org}/collections/{p}/records"),
            format!("{records}/{p}"),
            format!("/api/v1/orgs/{p}/collections/work_orders/records"),
        ] {
            let answer = app.get(&path, Some(&owner)).await;
            assert_eq!(answer.status, 404, "{path}: {}", answer.text);
            assert_inert(&answer);
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5 * SQLI.len() as u64), "no pg_sleep ran");
    assert_eq!(app.snapshot().await, before, "nothing written, nothing dropped");
    // The other organization is still invisible through every trick.
    let theirs = app
        .get(
            &format!("/api/v1/orgs/{other}/collections/work_orders/records?filter[title][eq]=%27%20OR%201=1--"),
            Some(&owner),
        )
        .await;
    assert_eq!(theirs.status, 404);
}
