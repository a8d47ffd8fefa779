//! Request limits: JSON nesting depth, header count and size, slow clients, load shedding, and
//! unknown fields refused on every JSON input.

use std::time::Duration;

use palisade_server::config::{Config, RateLimits};
use palisade_testkit::TestApp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("leaf"), |inner, _| json!({ "n": inner }))
}

#[tokio::test]
async fn json_nested_deeper_than_32_levels_is_refused_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    let made = app
        .send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(&owner),
            Some(json!({"name": "notes", "schema": {"type": "object"}})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let records = format!("/api/v1/orgs/{org}/collections/notes/records");
    // The body is {"data": …}: one level, so data may nest 31 more.
    let fits = app.send("POST", &records, Some(&owner), Some(json!({"data": nested(31)}))).await;
    assert_eq!(fits.status, 201, "{}", fits.text);
    let before = app.snapshot().await;
    let deep = app.send("POST", &records, Some(&owner), Some(json!({"data": nested(32)}))).await;
    deep.assert_problem(400, "json-too-deep");
    // Past serde_json's own recursion limit it is refused too, never a crash.
    let text = format!("{{\"data\": {}}}", "[".repeat(5000) + &"]".repeat(5000));
    let deeper = app.send_raw("POST", &records, Some(&owner), "application/json", text.into_bytes()).await;
    assert_eq!(deeper.status, 400, "{}", deeper.text);
    assert_eq!(app.snapshot().await, before, "nothing written");
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let app = TestApp::spawn().await;
    let mut request = app.http.get(app.url("/healthz"));
    for i in 0..70 {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    assert_eq!(request.send().await.unwrap().status().as_u16(), 431);
    let big = "a".repeat(20 * 1024);
    let answer = app.http.get(app.url("/healthz")).header("x-big", big).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 431);
    // Within the limits all is well.
    let fine = app.http.get(app.url("/healthz")).header("x-small", "a".repeat(4000)).send().await.unwrap();
    assert_eq!(fine.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        header_read_timeout_secs: 1,
        rate_limits: RateLimits::off(),
        ..Config::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let mut answer = Vec::new();
    // The server gives up on it (closing, possibly after a 408) well before this test would.
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow connection is still open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(app.get("/healthz", None).await.status, 200, "others are served meanwhile");
}

#[tokio::test]
async fn a_request_whose_body_dribbles_in_is_cut_off_with_408() {
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        request_timeout_secs: 1,
        rate_limits: RateLimits::off(),
        ..Config::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /api/v1/auth/signup HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("request-timeout") {
        match tokio::time::timeout_at(deadline, slow.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json") && text.contains("/problems/request-timeout"), "{text}");
    assert!(text.contains("x-content-type-options: nosniff"), "{text}");
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_are_shed_with_503_and_retry_after() {
    let app = TestApp::spawn_with(Config {
        hash_workers: Some(2),
        max_concurrent_requests: 1,
        rate_limits: RateLimits::off(),
        ..Config::default()
    })
    .await;
    // One request holds the only slot: its body never finishes arriving.
    let mut holder = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    holder
        .write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = app.get("/api/v1/me", None).await;
    shed.assert_problem(503, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(app.get("/healthz", None).await.status, 200, "liveness is never shed");
    drop(holder);
    let mut served = false;
    for _ in 0..50 {
        if app.get("/api/v1/me", None).await.status == 401 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the slot comes back when the holder goes");
}

/// Every JSON body the API takes refuses fields it does not know: the OpenAPI document says so
/// for each (`additionalProperties: false`), and one of them is tried for real.
#[tokio::test]
async fn every_json_input_refuses_unknown_fields() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let schemas = &doc["components"]["schemas"];
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(reference) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            else {
                continue;
            };
            let name = reference.rsplit('/').next().unwrap();
            assert_eq!(
                schemas[name]["additionalProperties"],
                json!(false),
                "{method} {path}: {name} must refuse unknown fields"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} bodies found");
    let (owner, _) = app.owner_of("owner@example.com", "Crew").await;
    app.send("POST", "/api/v1/orgs", Some(&owner), Some(json!({"name": "x", "tenant_id": "org_x"})))
        .await
        .assert_problem(422, "validation");
}
