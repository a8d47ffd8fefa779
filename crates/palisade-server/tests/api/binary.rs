//! The `palisade` binary itself: refusing privileged roles, secrets kept out of logs, crash
//! recovery of the embedded cluster, clean shutdown, no core dumps (its CLI tools: `binary_cli`).

use std::time::Duration;

use crate::support::{Server, call, command};

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::json;

fn refused(app: &TestApp, dsn: &str) -> String {
    let output = command(&[("PALISADE_DATABASE_URL", dsn), ("PALISADE_LOG_LEVEL", "warn")])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve must refuse for {}", app.db.name);
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn serve_refuses_a_superuser_a_bypassrls_role_and_an_owner() {
    let app = TestApp::spawn().await;
    let stderr = refused(&app, &app.db.admin_dsn());
    assert!(stderr.contains("refusing to start") && stderr.contains("is a superuser"), "{stderr}");

    let admin = app.admin().await;
    let bypass = format!("bypass_{}", app.db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {bypass} LOGIN BYPASSRLS PASSWORD 'pw'; GRANT CONNECT ON DATABASE {} TO {bypass}",
            app.db.name
        ))
        .await
        .unwrap();
    let stderr = refused(&app, &app.db.dsn(&bypass, "pw"));
    assert!(stderr.contains("has BYPASSRLS"), "{stderr}");

    let owner = format!("owner_{}", app.db.name);
    admin
        .batch_execute(&format!("CREATE ROLE {owner} LOGIN PASSWORD 'pw'; GRANT CONNECT ON DATABASE {} TO {owner}; GRANT USAGE ON SCHEMA palisade TO {owner}; ALTER TABLE palisade.memberships OWNER TO {owner}", app.db.name))
        .await
        .unwrap();
    let stderr = refused(&app, &app.db.dsn(&owner, "pw"));
    assert!(stderr.contains("owns table memberships"), "{stderr}");
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let app = TestApp::spawn().await;
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let mut server = Server::start(&[
        ("PALISADE_DATABASE_URL", &app.db.runtime_dsn()),
        ("PALISADE_DATABASE_SIGNIN_URL", &app.db.signin_dsn()),
        ("PALISADE_LOG_LEVEL", "trace"),
        ("PALISADE_INSTANCE_KEY_FILE", &key_file),
        ("PALISADE_KEK_FILE", &kek_file),
        ("PALISADE_KEY_STORE_FILE", &store_file),
        // Limits stay on (their code logs too), with room for this test's sign-ins.
        ("PALISADE_RATE_LIMITS__AUTH", "100"),
    ]);
    let base = server.base_url.clone();
    let (status, _) = call(
        &base,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": "log@example.com", "password": PASSWORD, "name": "Log"})),
    )
    .await;
    assert_eq!(status, 202);
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "log@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) =
        call(&base, "POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": first_refresh}))).await;
    assert_eq!(status, 200, "{body}");
    let refreshed_access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    // A reused refresh token is logged as an event, never as the token.
    let (status, _) =
        call(&base, "POST", "/api/v1/auth/refresh", None, Some(json!({"refresh_token": first_refresh}))).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "log@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    // A token in a query string must not be logged either.
    let (status, _) =
        call(&base, "GET", &format!("/api/v1/me?token={token}&password={PASSWORD}"), Some(&token), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "log@example.com", "password": "wrong-but-secret-999"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(&base, "POST", "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(status, 204);
    // Email links carry tokens too: request a reset and verify the address, then grep for both.
    let (status, _) =
        call(&base, "POST", "/api/v1/auth/forgot-password", None, Some(json!({"email": "log@example.com"}))).await;
    assert_eq!(status, 202);
    let outbox = palisade_mail::Outbox::open(server.data_dir.join("outbox")).unwrap();
    let mut mails = Vec::new();
    for _ in 0..200 {
        mails = outbox.list().unwrap().iter().map(|m| outbox.read(m).unwrap()).collect::<Vec<_>>();
        // Verification, the reused-refresh notice and the reset link.
        if mails.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let email_tokens: Vec<String> = mails
        .iter()
        .flat_map(|m| {
            [palisade_testkit::link_token(m, "/verify-email"), palisade_testkit::link_token(m, "/reset-password")]
        })
        .flatten()
        .collect();
    assert_eq!(email_tokens.len(), 2, "{mails:?}");
    let (status, _) =
        call(&base, "POST", "/api/v1/auth/verify-email", None, Some(json!({"token": email_tokens[0]}))).await;
    assert_eq!(status, 204);
    // An API key: made, used, and never logged either.
    let login = json!({"email": "log@example.com", "password": PASSWORD});
    let (status, body) = call(&base, "POST", "/api/v1/auth/login", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    let owner = body["access_token"].as_str().unwrap().to_owned();
    let (status, org) = call(&base, "POST", "/api/v1/orgs", Some(&owner), Some(json!({"name": "Logs"}))).await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_owned();
    let key_request = json!({"name": "probe", "permissions": ["org.read"]});
    let (status, key) =
        call(&base, "POST", &format!("/api/v1/orgs/{org}/api-keys"), Some(&owner), Some(key_request)).await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["secret"].as_str().unwrap().to_owned();
    assert_eq!(call(&base, "GET", &format!("/api/v1/orgs/{org}"), Some(&api_key), None).await.0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let logs = server.output();
    for token in &email_tokens {
        assert!(!logs.contains(token.as_str()), "an email token leaked into the logs");
    }
    assert!(logs.contains("request finished") && logs.contains("/api/v1/auth/login"), "logs were captured: {logs}");
    let signature = token.rsplit('.').next().unwrap();
    let refreshed_signature = refreshed_access.rsplit('.').next().unwrap();
    for secret in [
        PASSWORD,
        token.as_str(),
        signature,
        refreshed_signature,
        refreshed_access.as_str(),
        &first_refresh[4..],
        &refresh[4..],
        "wrong-but-secret-999",
        "log@example.com",
        owner.as_str(),
        api_key.as_str(),
        &api_key["pal_live_".len()..],
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{secret:?} leaked into the logs: {line}");
        }
    }
    assert!(!logs.contains("token="), "query strings are not logged");
    assert!(server.terminate().success());
}

#[tokio::test]
async fn embedded_cluster_survives_kill_9_and_stops_cleanly_on_sigterm() {
    let data_dir = std::env::temp_dir().join(format!("palisade-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_str().unwrap().to_owned();
    let envs = [("PALISADE_DATA_DIR", data.as_str()), ("PALISADE_LOG_LEVEL", "warn,palisade_server=info")];

    let mut first = Server::start(&envs);
    let base = first.base_url.clone();
    let token = first.verified_user("crash@example.com").await;
    let (status, org) = call(&base, "POST", "/api/v1/orgs", Some(&token), Some(json!({"name": "Survivor"}))).await;
    assert_eq!(status, 201);
    let org_id = org["id"].as_str().unwrap().to_owned();
    first.kill9();

    // Start again at once: the orphaned postmaster (shutting down on its parent-death signal,
    // or already gone, leaving postmaster.pid behind) must not stop the new server.
    let mut second = Server::start(&envs);
    let (status, body) = call(&second.base_url, "GET", &format!("/api/v1/orgs/{org_id}"), Some(&token), None).await;
    assert_eq!(status, 200, "data and session intact after kill -9: {body}");
    assert_eq!(body["name"], "Survivor");
    // The cluster was reused, not created again.
    assert_eq!(second.output().matches("Creating the embedded PostgreSQL cluster").count(), 0);

    assert!(second.terminate().success(), "SIGTERM exits 0: {}", second.output());
    // A clean stop: the periodic work ends before the database, so nothing complains about it
    // going away (connection errors, a failed sequencer pass).
    let output = second.output();
    let stopping = &output[output.find("drained in-flight requests").expect("the drain is logged")..];
    assert!(!stopping.contains("WARN") && !stopping.contains("ERROR"), "{stopping}");
    // No postmaster of this cluster is left running.
    let location = std::fs::read_to_string(data_dir.join("embedded-pg/cluster-location"))
        .map(|l| std::path::PathBuf::from(l.trim()))
        .unwrap_or_else(|_| data_dir.join("pg"));
    assert!(!location.join("pgdata/postmaster.pid").exists(), "postmaster stopped and removed its pid file");
    let _ = std::fs::remove_dir_all(&location);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A cluster created inside a data directory the postgres user could enter (created 0711 by the
/// operator) stays the cluster: once `serve` has made the directory private (0700), the next
/// start refuses with the way out instead of creating an empty cluster elsewhere (found by
/// reliability/suites/disk_full.sh).
#[tokio::test]
async fn an_in_place_cluster_is_never_replaced_by_an_empty_one() {
    if !nix::unistd::Uid::effective().is_root() {
        return; // Without root the cluster runs as this user and is always in place.
    }
    use std::os::unix::fs::PermissionsExt;
    let data_dir = std::env::temp_dir().join(format!("palisade-in-place-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let data = data_dir.to_str().unwrap().to_owned();
    let envs = [("PALISADE_DATA_DIR", data.as_str()), ("PALISADE_LOG_LEVEL", "warn,palisade_server=info")];
    let mut first = Server::start(&envs);
    assert!(data_dir.join("pg/pgdata/PG_VERSION").exists(), "created in place: {}", first.output());
    assert!(first.terminate().success(), "{}", first.output());

    let mut child = command(&envs)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill(); // still running: it started over an empty cluster (the bug)
    let second = child.wait_with_output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&second.stdout), String::from_utf8_lossy(&second.stderr));
    assert!(!second.status.success(), "{output}");
    assert!(output.contains("move the cluster where it can"), "{output}");
    assert!(!output.contains("Creating the embedded PostgreSQL cluster"), "{output}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A postmaster that dies under the server (kill -9, or giving up after a crash it could not
/// recover from, such as a full disk) is started again by the server itself; meanwhile the API
/// answers 503 problem+json, never 500 (found by reliability/suites/crash.sh and disk_full.sh).
#[tokio::test]
async fn embedded_postmaster_killed_under_the_server_is_restarted_and_outage_is_503() {
    let data_dir = std::env::temp_dir().join(format!("palisade-pm-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_str().unwrap().to_owned();
    let envs = [("PALISADE_DATA_DIR", data.as_str()), ("PALISADE_LOG_LEVEL", "warn,palisade_server=info")];
    let mut server = Server::start(&envs);
    let base = server.base_url.clone();
    let token = server.verified_user("pm-crash@example.com").await;
    let (status, org) = call(&base, "POST", "/api/v1/orgs", Some(&token), Some(json!({"name": "Survivor"}))).await;
    assert_eq!(status, 201);
    let org_path = format!("/api/v1/orgs/{}", org["id"].as_str().unwrap());
    let location = std::fs::read_to_string(data_dir.join("embedded-pg/cluster-location"))
        .map(|l| std::path::PathBuf::from(l.trim()))
        .unwrap_or_else(|_| data_dir.join("pg"));
    let pid_file = location.join("pgdata/postmaster.pid");
    let postmaster = |file: &std::path::Path| -> Option<i32> {
        std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok()
    };
    let first = postmaster(&pid_file).expect("postmaster.pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();

    // The database is gone for a moment: 503, never a 500 (a backend still alive right after
    // the kill may serve one more 200); then it is back without a restart of the server.
    let started = std::time::Instant::now();
    let mut seen_outage = false;
    loop {
        let (status, body) = call(&base, "GET", &org_path, Some(&token), None).await;
        match status {
            200 if seen_outage => break,
            200 => {}
            503 => {
                assert_eq!(body["type"], "/problems/unavailable", "{body}");
                seen_outage = true;
            }
            other => panic!("while PostgreSQL restarts the server answered {other}: {body}"),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the database did not come back: {}", server.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = postmaster(&pid_file).expect("a new postmaster.pid");
    assert_ne!(first, second);
    assert!(server.output().contains("exited on its own"), "{}", server.output());

    assert!(server.terminate().success(), "SIGTERM exits 0: {}", server.output());
    assert!(!pid_file.exists(), "the restarted postmaster stopped with the server");
    let _ = std::fs::remove_dir_all(&location);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The server holds keys and sessions in memory: it must never leave them in a core file.
#[tokio::test]
async fn the_server_process_never_dumps_core() {
    let app = TestApp::spawn().await;
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let server = Server::start(&[
        ("PALISADE_DATABASE_URL", &app.db.runtime_dsn()),
        ("PALISADE_DATABASE_SIGNIN_URL", &app.db.signin_dsn()),
        ("PALISADE_INSTANCE_KEY_FILE", &key_file),
        ("PALISADE_KEK_FILE", &kek_file),
        ("PALISADE_KEY_STORE_FILE", &store_file),
    ]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let values: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(values[4..6], ["0", "0"], "soft and hard limit: {core}");
    assert_eq!(call(&server.base_url, "GET", "/healthz", None, None).await.0, 200, "and it serves");
}
