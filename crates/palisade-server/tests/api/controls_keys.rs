//! `palisade controls check` for encryption at rest: E2–E5 pass on a healthy install holding
//! sealed records, secrets, an API key and a TOTP seed, and fail when each is broken.

use palisade_crypto::provider::KeyProvider;
use palisade_crypto::provider_local::{LocalProvider, LocalProviderFiles};
use palisade_server::config::Config;
use palisade_server::controls::{self, CheckResult, Status};
use palisade_server::controls_keys::{check_e2, check_e3, check_e4, check_e5};
use palisade_testkit::TestApp;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

use crate::collections::{create_collection, member_with_role};

/// The checks' configuration: the app's data directory, where its local provider keeps
/// `kek.key` and `keystore.json`.
fn config_of(app: &TestApp) -> Config {
    Config { data_dir: app.instance_key_file.parent().unwrap().to_owned(), ..Config::default() }
}

/// An organization holding a record with a sensitive field (sealed), a secret and an API key;
/// its owner enrols TOTP. Returns the org's TypeID.
async fn org_with_sealed_data(app: &TestApp, owner_email: &str, name: &str) -> String {
    let (owner, org) = app.owner_of(owner_email, name).await;
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "ssn": {"type": "string", "x-palisade-sensitive": true}},
        "required": ["name"]
    });
    create_collection(app, &owner, &org, "people", schema).await;
    // A member writes the record: sealing works for whoever may create records.
    let (member, _) = member_with_role(app, &org, &format!("member.{owner_email}"), "member").await;
    let record = json!({"data": {"name": "Ana", "ssn": "078-05-1120"}});
    let made =
        app.send("POST", &format!("/api/v1/orgs/{org}/collections/people/records"), Some(&member), Some(record)).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let secret = json!({"name": "stripe", "value": "sk_live_CANARY"});
    let made = app.send("POST", &format!("/api/v1/orgs/{org}/secrets"), Some(&owner), Some(secret)).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let key = json!({"name": "import", "permissions": ["records.read_all"]});
    let made = app.send("POST", &format!("/api/v1/orgs/{org}/api-keys"), Some(&owner), Some(key)).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let totp = app.send("POST", "/api/v1/me/mfa/totp", Some(&owner), None).await;
    assert_eq!(totp.status, 201, "{}", totp.text);
    org
}

fn uuid_of(org: &str) -> uuid::Uuid {
    org.parse::<palisade_core::OrgId>().unwrap().as_uuid()
}

#[track_caller]
fn assert_fails(result: &CheckResult, expected: &str) {
    assert_eq!(result.status, Status::Fail, "{result:?}");
    assert!(result.evidence.contains(expected), "expected {expected:?} in {}", result.evidence);
}

#[tokio::test]
async fn a_healthy_install_passes_e2_to_e5() {
    let app = TestApp::spawn().await;
    org_with_sealed_data(&app, "a@example.com", "Org A").await;
    org_with_sealed_data(&app, "b@example.com", "Org B").await;
    let (admin, runtime, config) = (app.admin().await, app.runtime().await, config_of(&app));
    let keys = app.key_jobs().await;
    let connections = controls::CheckConnections { runtime: &runtime, admin: Some(&admin), keys: Some(&keys) };
    let results = controls::run_all(connections, None, &config).await;
    let by_id = |id: &str| results.iter().find(|r| r.id == id).unwrap().clone();
    for id in ["E2", "E3", "E4", "E5"] {
        assert_eq!(by_id(id).status, Status::Pass, "{:?}", by_id(id));
    }
    let e2 = by_id("E2").evidence;
    assert!(e2.starts_with("2 organization(s): 2 sealed record(s) and 2 secret(s)"), "{e2}");
    assert!(e2.contains("2 data key(s), each wrapped by its organization's own wrapping key"), "{e2}");
    let e3 = by_id("E3").evidence;
    assert!(e3.contains("TOTP seeds 2") && e3.contains("2 API key(s) stored only as 32-byte keyed hashes"), "{e3}");
    assert!(!e3.contains("legacy"), "{e3}");
    let e4 = by_id("E4").evidence;
    assert!(
        e4.starts_with("local provider (master key ") && e4.contains("of 2 organization(s) and the instance"),
        "{e4}"
    );
    assert!(e4.contains("oldest active organization data key 0 days old (rotation every 365 days)"), "{e4}");
    let e5 = by_id("E5").evidence;
    assert!(e5.contains("2 secret(s), every one an envelope") && e5.contains("live API not checked"), "{e5}");
    assert!(e5.contains("kek.key") && e5.contains("keystore.json") && e5.contains("mode 700"), "{e5}");
    // Against the running server, its API description shows no way to read a secret back.
    let live = check_e5(&runtime, None, Some(&app.base_url), &config).await;
    assert_eq!(live.status, Status::Pass, "{live:?}");
    assert!(live.evidence.contains("live API: no operation returns a secret's value"), "{live:?}");
    // Without the operator's connection: E2 cannot read every organization; E3 checks what the
    // runtime role sees and says what it left out.
    assert_eq!(check_e2(None).await.status, Status::Skip);
    let partial = check_e3(&runtime, None).await;
    assert_eq!(partial.status, Status::Pass, "{partial:?}");
    assert!(partial.evidence.contains("not checked without the admin connection"), "{partial:?}");
}

#[tokio::test]
async fn e2_fails_for_a_sensitive_field_in_clear_another_orgs_key_or_a_shared_wrapping_key() {
    let app = TestApp::spawn().await;
    let a = org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let b = org_with_sealed_data(&app, "b@example.com", "Org B").await;
    let admin = app.admin().await;
    assert_eq!(check_e2(Some(&admin)).await.status, Status::Pass);

    let (a_id, b_id) = (uuid_of(&a), uuid_of(&b));
    let clear = "UPDATE palisade.records SET data = data || '{\"ssn\": \"x\"}' WHERE tenant_id = $1";
    admin.execute(clear, &[&a_id]).await.unwrap();
    assert_fails(&check_e2(Some(&admin)).await, &format!("{a}: record rec_"));
    assert_fails(&check_e2(Some(&admin)).await, "holds sensitive field(s) ssn in clear in data");
    admin.execute("UPDATE palisade.records SET data = data - 'ssn' WHERE tenant_id = $1", &[&a_id]).await.unwrap();
    assert_eq!(check_e2(Some(&admin)).await.status, Status::Pass);

    // Org A's record now carries org B's ciphertext: it names B's data key.
    // (Past the sealed-key guard, which refuses such a write: owner rights can switch it off.)
    admin.batch_execute("ALTER TABLE palisade.records DISABLE TRIGGER records_sealed_key_guard_update").await.unwrap();
    admin
        .execute(
            "UPDATE palisade.records SET sealed = (SELECT sealed FROM palisade.records WHERE tenant_id = $2 AND sealed IS NOT NULL)
              WHERE tenant_id = $1 AND sealed IS NOT NULL",
            &[&a_id, &b_id],
        )
        .await
        .unwrap();
    let moved = check_e2(Some(&admin)).await;
    assert_fails(&moved, &format!("{a}: record rec_"));
    assert_fails(&moved, "is sealed under data key dek_");
    assert_fails(&moved, &format!(" of {b}"));

    let app = TestApp::spawn().await;
    let a = org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let b = org_with_sealed_data(&app, "b@example.com", "Org B").await;
    let admin = app.admin().await;
    admin
        .execute(
            "UPDATE palisade.org_data_keys SET wrapping_key = $1 || '.v1' WHERE tenant_id = $2",
            &[&b, &uuid_of(&a)],
        )
        .await
        .unwrap();
    let shared = check_e2(Some(&admin)).await;
    assert_fails(&shared, &format!("{a}: data key dek_"));
    assert_fails(&shared, &format!("is wrapped by {b}.v1, not by {a}.v<n>"));
    assert_fails(&shared, &format!("wrapping key {b}.v1 is shared by "));
}

#[tokio::test]
async fn e3_counts_legacy_values_and_fails_for_a_clear_seed_a_clear_passkey_or_a_key_in_place_of_its_hash() {
    let app = TestApp::spawn().await;
    org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let (admin, runtime) = (app.admin().await, app.runtime().await);
    assert_eq!(check_e3(&runtime, Some(&admin)).await.status, Status::Pass);

    // A signing key sealed before envelopes (format byte 1): still AES-256-GCM, reported.
    admin
        .batch_execute(
            "UPDATE palisade.signing_keys SET sealed_private = decode('01' || repeat('ab', 60), 'hex')
              WHERE key_id = (SELECT min(key_id) FROM palisade.signing_keys)",
        )
        .await
        .unwrap();
    let legacy = check_e3(&runtime, Some(&admin)).await;
    assert_eq!(legacy.status, Status::Pass, "{legacy:?}");
    assert!(legacy.evidence.contains("1 legacy value(s) sealed before envelopes"), "{legacy:?}");

    // No CHECK guards these columns, so clear bytes can be written and must be caught.
    admin
        .batch_execute("UPDATE palisade.totp_factors SET secret_sealed = convert_to('JBSWY3DPEHPK3PXP', 'UTF8')")
        .await
        .unwrap();
    assert_fails(&check_e3(&runtime, Some(&admin)).await, "TOTP seeds: 1 neither an envelope nor AES-256-GCM");
    admin
        .batch_execute("UPDATE palisade.signing_keys SET sealed_private = decode(repeat('00', 32), 'hex')")
        .await
        .unwrap();
    assert_fails(&check_e3(&runtime, None).await, "signing keys: 1 neither an envelope nor AES-256-GCM");

    let app = TestApp::spawn().await;
    org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let (admin, runtime) = (app.admin().await, app.runtime().await);
    // A legacy WebAuthn row keeps its credential in clear (`passkey`).
    admin
        .batch_execute(
            "INSERT INTO palisade.webauthn_credentials (id, user_id, name, credential_id, passkey, created_at)
             SELECT gen_random_uuid(), id, 'old key', '\\x0102', '{}', now() FROM palisade.users LIMIT 1",
        )
        .await
        .unwrap();
    assert_fails(&check_e3(&runtime, Some(&admin)).await, "1 WebAuthn credential(s) still stored in clear");
    admin.batch_execute("DELETE FROM palisade.webauthn_credentials").await.unwrap();
    // The CHECK keeps a hash 32 bytes long; a 32-byte key text would still fit.
    admin
        .batch_execute("UPDATE palisade.api_keys SET secret_hash = convert_to('pal_live_' || repeat('x', 23), 'UTF8')")
        .await
        .unwrap();
    assert_fails(
        &check_e3(&runtime, Some(&admin)).await,
        "1 API key(s) stored as something other than a 32-byte keyed hash",
    );
    admin.batch_execute("GRANT SELECT (secret_hash) ON palisade.api_keys TO palisade_app").await.unwrap();
    assert_fails(&check_e3(&runtime, None).await, "the server role may read API key hashes");
}

#[tokio::test]
async fn e4_fails_for_an_overdue_rotation_a_wrapping_key_missing_from_the_provider_or_no_provider() {
    let app = TestApp::spawn().await;
    let org = org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let (admin, runtime, config) = (app.admin().await, app.runtime().await, config_of(&app));
    let keys = app.key_jobs().await;
    let keys = Some(&keys);
    assert_eq!(check_e4(&runtime, keys, &config).await.status, Status::Pass);

    // The runtime role able to do the key jobs' work, or no key jobs' login to check with.
    admin
        .batch_execute("GRANT EXECUTE ON FUNCTION palisade.shred_org(uuid, timestamptz, uuid) TO palisade_app")
        .await
        .unwrap();
    assert_fails(&check_e4(&runtime, keys, &config).await, "role palisade_app can execute palisade.shred_org");
    admin
        .batch_execute("REVOKE EXECUTE ON FUNCTION palisade.shred_org(uuid, timestamptz, uuid) FROM palisade_app")
        .await
        .unwrap();
    let without_keys = check_e4(&runtime, None, &config).await;
    assert_eq!(without_keys.status, Status::Skip, "{without_keys:?}");
    assert!(without_keys.evidence.contains("set PALISADE_DATABASE_KEYS_URL"), "{without_keys:?}");
    assert_eq!(check_e4(&runtime, keys, &config).await.status, Status::Pass);

    admin
        .batch_execute("UPDATE palisade.org_data_keys SET created_at = created_at - interval '400 days 12 hours'")
        .await
        .unwrap();
    assert_fails(
        &check_e4(&runtime, keys, &config).await,
        &format!("{org}: active data key is 400 days old, rotation is due every 365 days"),
    );
    let lenient = Config { data_key_rotation_days: 500, ..config_of(&app) };
    assert_eq!(check_e4(&runtime, keys, &lenient).await.status, Status::Pass);
    admin
        .batch_execute("UPDATE palisade.org_data_keys SET created_at = created_at + interval '400 days 12 hours'")
        .await
        .unwrap();

    // Crypto-shredding by hand: the provider no longer holds the org's wrapping key.
    let wrapping: String =
        admin.query_one("SELECT wrapping_key FROM palisade.org_data_keys", &[]).await.unwrap().get(0);
    assert_eq!(wrapping, format!("{org}.v1"));
    let provider =
        LocalProvider::open(LocalProviderFiles { kek: config.kek_file(), store: config.key_store_file() }).unwrap();
    provider.destroy_key(&wrapping).unwrap();
    assert_fails(
        &check_e4(&runtime, keys, &config).await,
        &format!("wrapping key {wrapping} of {org} is not in the local provider: data under it is unreadable"),
    );

    // A configuration whose local provider files are gone: refused, and nothing is created.
    let empty = std::env::temp_dir().join(format!("palisade-e4-{}", app.db.name));
    let elsewhere = Config { data_dir: empty.clone(), ..Config::default() };
    assert_fails(&check_e4(&runtime, keys, &elsewhere).await, "kek.key does not exist");
    assert!(!empty.exists());
}

#[tokio::test]
async fn e5_fails_for_a_readable_kek_an_open_data_directory_a_clear_secret_or_an_api_that_returns_secrets() {
    let app = TestApp::spawn().await;
    org_with_sealed_data(&app, "a@example.com", "Org A").await;
    let (admin, runtime, config) = (app.admin().await, app.runtime().await, config_of(&app));
    assert_eq!(check_e5(&runtime, Some(&admin), None, &config).await.status, Status::Pass);

    let kek = config.kek_file();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = check_e5(&runtime, None, None, &config).await;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_fails(&readable, &format!("{} is mode 644: other users may read it", kek.display()));

    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o757)).unwrap();
    let open = check_e5(&runtime, None, None, &config).await;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_fails(&open, &format!("data directory {} is mode 757, not 700", config.data_dir.display()));
    assert_fails(&open, "is mode 757: anyone may replace");
    assert_eq!(check_e5(&runtime, None, None, &config).await.status, Status::Pass);

    // A server whose API description offers to read a secret back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let doc = json!({
        "paths": {
            "/api/v1/orgs/{org}/secrets": {"get": {}, "post": {}},
            "/api/v1/orgs/{org}/secrets/{name}": {"get": {}, "put": {}}
        },
        "components": {"schemas": {"SecretResponse": {"properties": {"name": {}, "value": {}}}}}
    });
    let leaky = axum::Router::new().route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, leaky).await.unwrap() });
    let live = check_e5(&runtime, None, Some(&format!("http://{addr}")), &config).await;
    assert_fails(&live, "GET /api/v1/orgs/{org}/secrets/{name} exists");
    assert_fails(&live, "the SecretResponse schema has a value property");

    admin
        .batch_execute(
            "ALTER TABLE palisade.secrets DROP CONSTRAINT secrets_sealed_check;
             ALTER TABLE palisade.secrets DISABLE TRIGGER secrets_sealed_key_guard_update;
             UPDATE palisade.secrets SET sealed = convert_to('sk_live_CANARY', 'UTF8')",
        )
        .await
        .unwrap();
    let clear = check_e5(&runtime, Some(&admin), None, &config).await;
    assert_fails(&clear, "secrets.sealed has no CHECK that keeps it an envelope");
    assert_fails(&clear, "1 secret(s) stored in clear (not an envelope)");
}
