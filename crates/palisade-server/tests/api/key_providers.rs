//! The key providers under the real binary: the `pkcs11` provider against a SoftHSM2 token (the
//! wrapping keys never leave it; an HSM outage fails requests that need a key with 503 and
//! stores nothing; service resumes when it is back), and the `local` provider refusing to start
//! with a missing or wrong KEK file without rewriting anything.

use std::time::{Duration, Instant};

use palisade_testkit::{SoftHsm, fresh_database};
use serde_json::json;

use crate::support::{Server, call, refused_start, scratch_dir};

async fn org(base: &str, token: &str, name: &str) -> String {
    let (status, body) = call(base, "POST", "/api/v1/orgs", Some(token), Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn with_an_hsm_keys_stay_in_it_and_an_outage_fails_closed_with_503_and_nothing_stored() {
    let db = fresh_database().await;
    let hsm = SoftHsm::new();
    let dsn = db.runtime_dsn();
    let mut envs = hsm.envs();
    envs.push(("PALISADE_DATABASE_URL", dsn));
    envs.push(("PALISADE_DATABASE_SIGNIN_URL", db.signin_dsn()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&envs);
    let base = server.base_url.clone();
    let token = server.verified_user("hsm@example.com").await;
    let first = org(&base, &token, "First").await;
    let (status, body) = call(
        &base,
        "POST",
        &format!("/api/v1/orgs/{first}/secrets"),
        Some(&token),
        Some(json!({"name": "api", "value": "in-the-hsm"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, keys) = call(&base, "GET", &format!("/api/v1/orgs/{first}/keys"), Some(&token), None).await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["provider"], "pkcs11");
    assert_eq!(keys["master_key_id"], "token:palisade");
    // The local provider's files were never made: the wrapping keys live in the token.
    assert!(!server.data_dir.join("kek.key").exists() && !server.data_dir.join("keystore.json").exists());

    // The HSM goes away. An organization whose first key must be made now gets 503, and
    // nothing of it is stored.
    let second = org(&base, &token, "Second").await;
    hsm.take_offline();
    let (status, body) = call(
        &base,
        "POST",
        &format!("/api/v1/orgs/{second}/secrets"),
        Some(&token),
        Some(json!({"name": "api", "value": "never-stored"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "/problems/unavailable");
    assert!(!body.to_string().contains("never-stored"));
    let admin = db.admin().await;
    let second_uuid = second.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    for table in ["secrets", "org_data_keys"] {
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM palisade.{table} WHERE tenant_id = $1"), &[&second_uuid])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}: something was stored during the outage");
    }

    // Back: the provider reconnects by itself and the same request succeeds.
    hsm.bring_online();
    let started = Instant::now();
    loop {
        let (status, body) = call(
            &base,
            "POST",
            &format!("/api/v1/orgs/{second}/secrets"),
            Some(&token),
            Some(json!({"name": "api", "value": "stored-later"})),
        )
        .await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(started.elapsed() < Duration::from_secs(30), "the provider never came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(server);

    // A wrong PIN: the server refuses to start, and says so without the PIN.
    let mut wrong = envs.clone();
    wrong.retain(|(k, _)| *k != "PALISADE_PKCS11_PIN");
    wrong.push(("PALISADE_PKCS11_PIN", "wrong-pin-canary-4821"));
    let output = refused_start(&wrong, &scratch_dir("pin"));
    assert!(output.contains("PIN"), "{output}");
    assert!(!output.contains("wrong-pin-canary-4821"), "the PIN is in the output: {output}");
}

#[tokio::test]
async fn a_missing_or_wrong_kek_file_stops_the_server_with_what_to_do_and_nothing_is_rewritten() {
    let db = fresh_database().await;
    let (dsn, signin) = (db.runtime_dsn(), db.signin_dsn());
    let data_dir = scratch_dir("kek");
    let data = data_dir.display().to_string();
    let envs = [
        ("PALISADE_DATABASE_URL", dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin.as_str()),
        ("PALISADE_DATA_DIR", data.as_str()),
    ];
    let mut server = Server::start(&envs);
    let token = server.verified_user("kek@example.com").await;
    let org = org(&server.base_url, &token, "Crew").await;
    let (status, _) = call(
        &server.base_url,
        "POST",
        &format!("/api/v1/orgs/{org}/secrets"),
        Some(&token),
        Some(json!({"name": "api", "value": "v"})),
    )
    .await;
    assert_eq!(status, 201);
    server.terminate();

    let kek = data_dir.join("kek.key");
    let store = data_dir.join("keystore.json");
    let (original, stored) = (std::fs::read(&kek).unwrap(), std::fs::read(&store).unwrap());
    use std::os::unix::fs::PermissionsExt;

    std::fs::write(&kek, [7u8; 32]).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = refused_start(&envs, &data_dir);
    assert!(output.contains("restore the KEK file that belongs to this store"), "{output}");
    assert_eq!(std::fs::read(&kek).unwrap(), [7u8; 32], "the wrong KEK was left as it was");

    std::fs::remove_file(&kek).unwrap();
    let output = refused_start(&envs, &data_dir);
    assert!(output.contains("is missing but the key store exists"), "{output}");
    assert!(!kek.exists(), "no new KEK was made for an existing store");
    assert_eq!(std::fs::read(&store).unwrap(), stored, "the key store was never rewritten");

    std::fs::write(&kek, &original).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start(&envs);
    let (status, body) = call(
        &server.base_url,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "kek@example.com", "password": palisade_testkit::PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (status, keys) = call(&server.base_url, "GET", &format!("/api/v1/orgs/{org}/keys"), Some(token), None).await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["keys"][0]["values"], 1);
}
