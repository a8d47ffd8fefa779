//! Secret hygiene (E5): canary secrets planted through every secret-taking endpoint — passwords
//! (sign-up, wrong sign-in, step-up, reset), the secrets store (create, replace, refused input),
//! sensitive record fields (create, update, refused input), TOTP and API-key secrets we issue —
//! then every log line (at trace level), every error body and the audit export are searched:
//! zero hits. The database holds none of them in the clear either.

use std::time::Duration;

use palisade_testkit::TestApp;
use serde_json::{Value, json};

use crate::support::{Server, call};

const PASSWORD: &str = "Canary-Pw-7f3k9q-Zebra-Lantern";
const WRONG_PASSWORD: &str = "Canary-Wrong-2b8x-Otter";
const NEW_PASSWORD: &str = "Canary-Reset-5j1m-Falcon-Harbor";
const STORED_SECRET: &str = "CANARY-secret-value-93af01";
const REPLACED_SECRET: &str = "CANARY-secret-replaced-77e1";
const REFUSED_SECRET: &str = "CANARY-secret-refused-4410";
const SENSITIVE: &str = "CANARY-ssn-078-05-1120";
const SENSITIVE_UPDATED: &str = "CANARY-ssn-updated-219";
const SENSITIVE_REFUSED: &str = "CANARY-ssn-refused-6618";

#[tokio::test]
async fn canary_secrets_never_reach_logs_error_bodies_or_the_audit_export() {
    let app = TestApp::spawn().await;
    let mut envs = app.key_envs();
    envs.push(("PALISADE_DATABASE_URL", app.db.runtime_dsn()));
    envs.push(("PALISADE_DATABASE_SIGNIN_URL", app.db.signin_dsn()));
    envs.push(("PALISADE_LOG_LEVEL", "trace".into()));
    envs.push(("PALISADE_RATE_LIMITS", "off".into()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&envs);
    let base = server.base_url.clone();
    let mut errors: Vec<Value> = Vec::new();
    let mut bodies: Vec<Value> = Vec::new();

    // Passwords: sign-up, a wrong sign-in, the right one.
    let signup = json!({"email": "canary@example.com", "password": PASSWORD, "name": "Canary"});
    assert_eq!(call(&base, "POST", "/api/v1/auth/signup", None, Some(signup)).await.0, 202);
    let outbox = palisade_mail::Outbox::open(server.data_dir.join("outbox")).unwrap();
    let mut verify = None;
    for _ in 0..200 {
        verify = outbox
            .list()
            .unwrap()
            .iter()
            .find_map(|m| palisade_testkit::link_token(&outbox.read(m).unwrap(), "/verify-email"));
        if verify.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(&base, "POST", "/api/v1/auth/verify-email", None, Some(json!({"token": verify.unwrap()}))).await.0,
        204
    );
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "canary@example.com", "password": WRONG_PASSWORD})),
    )
    .await;
    assert_eq!(status, 401);
    errors.push(body);
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "canary@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) =
        call(&base, "POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": WRONG_PASSWORD}))).await;
    assert_eq!(status, 401, "{body}");
    errors.push(body);
    assert_eq!(
        call(&base, "POST", "/api/v1/auth/step-up", Some(&token), Some(json!({"password": PASSWORD}))).await.0,
        204
    );

    // Secrets we issue: a TOTP seed (shown once) and an API key.
    let (status, totp) = call(&base, "POST", "/api/v1/me/mfa/totp", Some(&token), None).await;
    assert_eq!(status, 201);
    let totp_seed = totp["secret"].as_str().unwrap().to_owned();
    let (status, org) = call(&base, "POST", "/api/v1/orgs", Some(&token), Some(json!({"name": "Canary"}))).await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_owned();
    let (status, key) = call(
        &base,
        "POST",
        &format!("/api/v1/orgs/{org}/api-keys"),
        Some(&token),
        Some(json!({"name": "probe", "permissions": ["org.read"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["secret"].as_str().unwrap().to_owned();

    // The secrets store: create, replace, and refused input carrying a value.
    let secrets = format!("/api/v1/orgs/{org}/secrets");
    let (status, body) =
        call(&base, "POST", &secrets, Some(&token), Some(json!({"name": "smtp", "value": STORED_SECRET}))).await;
    assert_eq!(status, 201, "{body}");
    bodies.push(body);
    let (status, body) =
        call(&base, "PUT", &format!("{secrets}/smtp"), Some(&token), Some(json!({"value": REPLACED_SECRET}))).await;
    assert_eq!(status, 200, "{body}");
    bodies.push(body);
    for refused in [
        json!({"name": "bad name", "value": REFUSED_SECRET}),
        json!({"name": "smtp", "value": REFUSED_SECRET}),
        json!({"name": "x", "value": REFUSED_SECRET, "extra": REFUSED_SECRET}),
        json!({"name": "x", "value": [REFUSED_SECRET]}),
    ] {
        let (status, body) = call(&base, "POST", &secrets, Some(&token), Some(refused)).await;
        assert!(status == 422 || status == 409, "{status} {body}");
        errors.push(body);
    }
    let (_, body) = call(&base, "GET", &secrets, Some(&token), None).await;
    bodies.push(body);

    // Sensitive record fields: create, update, read, and refused input carrying values.
    let schema = json!({"type": "object", "additionalProperties": false, "properties": {
        "name": {"type": "string"}, "ssn": {"type": "string", "maxLength": 40, "x-palisade-sensitive": true}}});
    let (status, body) = call(
        &base,
        "POST",
        &format!("/api/v1/orgs/{org}/collections"),
        Some(&token),
        Some(json!({"name": "people", "schema": schema})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let records = format!("/api/v1/orgs/{org}/collections/people/records");
    let (status, record) =
        call(&base, "POST", &records, Some(&token), Some(json!({"data": {"name": "Ana", "ssn": SENSITIVE}}))).await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &base,
        "PATCH",
        &format!("{records}/{id}"),
        Some(&token),
        Some(json!({"data": {"ssn": SENSITIVE_UPDATED}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for refused in [
        json!({"data": {"name": "Bo", "ssn": SENSITIVE_REFUSED.repeat(3)}}),
        json!({"data": {"name": "Bo", "ssn": SENSITIVE_REFUSED, "other": SENSITIVE_REFUSED}}),
        json!({"data": {"name": ["x"], "ssn": SENSITIVE_REFUSED}}),
    ] {
        let (status, body) = call(&base, "POST", &records, Some(&token), Some(refused)).await;
        assert_eq!(status, 422, "{body}");
        errors.push(body);
    }
    let (status, body) = call(&base, "GET", &format!("{records}?filter[ssn]={SENSITIVE}"), Some(&token), None).await;
    assert_eq!(status, 400, "{body}");
    errors.push(body);

    // A password reset to a new canary password.
    assert_eq!(
        call(&base, "POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "canary@example.com"}))).await.0,
        202
    );
    let mut reset = None;
    for _ in 0..200 {
        reset = outbox
            .list()
            .unwrap()
            .iter()
            .find_map(|m| palisade_testkit::link_token(&outbox.read(m).unwrap(), "/reset-password"));
        if reset.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/reset-password",
        None,
        Some(json!({"token": reset.clone().unwrap(), "password": "short"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    errors.push(body);
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/reset-password",
        None,
        Some(json!({"token": reset.unwrap(), "password": NEW_PASSWORD})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "canary@example.com", "password": NEW_PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    // The audit export, as an auditor downloads it.
    let (status, _) = call(&base, "GET", &format!("/api/v1/orgs/{org}/audit-events?limit=1"), Some(&token), None).await;
    assert_eq!(status, 200);
    let export = reqwest::Client::new()
        .get(format!("{base}/api/v1/orgs/{org}/audit-events/export?format=jsonl"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let export = export.text().await.unwrap();
    assert!(export.contains("secret.created") && export.contains("record.created"), "{export}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = server.output();
    assert!(logs.contains("request finished"), "logs were captured");
    let errors = serde_json::to_string(&errors).unwrap();
    let bodies = serde_json::to_string(&bodies).unwrap();
    let admin = app.admin().await;
    let database: String = admin
        .query_one(
            "SELECT string_agg(t::text, '|') FROM (SELECT s::text AS t FROM palisade.secrets s UNION ALL
             SELECT r::text FROM palisade.records r UNION ALL SELECT e::text FROM palisade.audit_events e UNION ALL
             SELECT f::text FROM palisade.totp_factors f UNION ALL SELECT u::text FROM palisade.users u) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let canaries = [
        PASSWORD,
        WRONG_PASSWORD,
        NEW_PASSWORD,
        STORED_SECRET,
        REPLACED_SECRET,
        REFUSED_SECRET,
        SENSITIVE,
        SENSITIVE_UPDATED,
        SENSITIVE_REFUSED,
        totp_seed.as_str(),
        api_key.as_str(),
        &api_key["pal_live_".len()..],
    ];
    for canary in canaries {
        for (place, text) in
            [("logs", &logs), ("error bodies", &errors), ("audit export", &export), ("database", &database)]
        {
            if let Some(at) = text.find(canary) {
                let line = &text[at.saturating_sub(120)..(at + canary.len() + 40).min(text.len())];
                panic!("{canary:?} found in the {place}: …{line}…");
            }
        }
    }
    // Secret values never come back in successful answers either (sensitive fields do, to their
    // permitted reader, which is the point of them).
    for canary in [STORED_SECRET, REPLACED_SECRET] {
        assert!(!bodies.contains(canary), "{canary} in an answer");
    }
}
