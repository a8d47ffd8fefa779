//! The `palisade` binary itself: refusing privileged roles, secrets kept out of logs, crash
//! recovery of the embedded cluster, clean shutdown, and the CLI tools.

use std::time::Duration;

use crate::support::{Server, call, command};

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::{Value, json};

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

#[tokio::test]
async fn admin_grant_makes_an_instance_admin_and_is_audited() {
    let app = TestApp::spawn().await;
    let token = app.user("root@example.com").await;
    let admin_dsn = app.db.admin_dsn();
    let grant = command(&[("PALISADE_DATABASE_ADMIN_URL", &admin_dsn)])
        .args(["admin", "grant", "--email", "ROOT@example.com"])
        .output()
        .unwrap();
    assert!(grant.status.success(), "{}", String::from_utf8_lossy(&grant.stderr));
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.body["is_instance_admin"], true);
    let events: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM palisade.audit_events WHERE action = 'user.admin_granted' AND actor_kind = 'system'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    let missing = command(&[("PALISADE_DATABASE_ADMIN_URL", &admin_dsn)])
        .args(["admin", "grant", "--email", "nobody@example.com"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("sign up first"));
}

#[tokio::test]
async fn migrate_builds_an_empty_external_database_and_serve_runs_as_the_new_role() {
    let app = TestApp::spawn().await;
    // An empty database next to the test's own, as an operator would provide.
    let empty = format!("{}_ext", app.db.name);
    let role = format!("app_{}", app.db.name);
    app.admin().await.batch_execute(&format!("CREATE DATABASE {empty}")).await.unwrap();
    let swap_db = |dsn: String| dsn.replace(&format!("dbname={}", app.db.name), &format!("dbname={empty}"));
    let admin_dsn = swap_db(app.db.admin_dsn());
    let runtime_dsn = swap_db(app.db.dsn(&role, "runtime-secret-for-test"));
    let envs = [
        ("PALISADE_DATABASE_ADMIN_URL", admin_dsn.as_str()),
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_RUNTIME_ROLE", role.as_str()),
    ];

    // serve before migrate: the role does not exist yet, so it cannot even connect.
    let early = command(&[("PALISADE_DATABASE_URL", runtime_dsn.as_str())])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!early.status.success());

    let migrate = command(&envs).arg("migrate").output().unwrap();
    let out = String::from_utf8_lossy(&migrate.stdout);
    assert!(migrate.status.success(), "{out}{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(
        out.contains(&format!("Applied {} migration(s)", palisade_store::migrate::latest_version()))
            && out.contains(&format!("runtime role {role} created")),
        "{out}"
    );
    let again = command(&envs).arg("migrate").output().unwrap();
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains(&format!(
            "Applied 0 migration(s) ({} already current)",
            palisade_store::migrate::latest_version()
        )),
        "{again}"
    );

    // A runtime role that gained privileges is put back in its place by the next migrate.
    let admin = app.admin().await;
    admin.batch_execute(&format!("ALTER ROLE {role} BYPASSRLS CREATEDB")).await.unwrap();
    assert!(command(&envs).arg("migrate").output().unwrap().status.success());
    let row =
        admin.query_one("SELECT rolbypassrls, rolcreatedb FROM pg_roles WHERE rolname = $1", &[&role]).await.unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, false));

    let server = Server::start(&[("PALISADE_DATABASE_URL", runtime_dsn.as_str())]);
    let (status, _) = call(&server.base_url, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{}", server.output());
    let (status, _) = call(
        &server.base_url,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": "ext@example.com", "password": PASSWORD, "name": "E"})),
    )
    .await;
    assert_eq!(status, 202);
}

/// With an owner that is not a superuser, FORCE makes row-level security apply to the owner's
/// own SECURITY DEFINER functions too: entering a tenant and listing one's organizations must
/// still work, through the policies rather than around them.
#[tokio::test]
async fn everything_works_when_the_schema_owner_is_not_a_superuser() {
    let app = TestApp::spawn().await;
    let owner = format!("own_{}", app.db.name);
    let role = format!("app_{}", app.db.name);
    let database = format!("{}_own", app.db.name);
    let admin = app.admin().await;
    admin.batch_execute(&format!("CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'owner-pw'")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {database} OWNER {owner}")).await.unwrap();
    let swap_db = |dsn: String| dsn.replace(&format!("dbname={}", app.db.name), &format!("dbname={database}"));
    let owner_dsn = swap_db(app.db.dsn(&owner, "owner-pw"));
    let runtime_dsn = swap_db(app.db.dsn(&role, "runtime-pw-1234"));
    let migrate = command(&[
        ("PALISADE_DATABASE_ADMIN_URL", owner_dsn.as_str()),
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_RUNTIME_ROLE", role.as_str()),
    ])
    .arg("migrate")
    .output()
    .unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let server = Server::start(&[("PALISADE_DATABASE_URL", runtime_dsn.as_str()), ("PALISADE_RATE_LIMITS", "off")]);
    let base = server.base_url.clone();
    let token = server.verified_user("o@example.com").await;
    let mut ids = Vec::new();
    for name in ["First", "Second"] {
        let (status, org) = call(&base, "POST", "/api/v1/orgs", Some(&token), Some(json!({"name": name}))).await;
        assert_eq!(status, 201, "{org}");
        ids.push(org["id"].as_str().unwrap().to_owned());
    }
    let (status, list) = call(&base, "GET", "/api/v1/orgs", Some(&token), None).await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&str> = list["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, org) = call(&base, "GET", &format!("/api/v1/orgs/{}", ids[1]), Some(&token), None).await;
    assert_eq!((status, org["name"].as_str()), (200, Some("Second")));
    let (status, members) = call(&base, "GET", &format!("/api/v1/orgs/{}/members", ids[0]), Some(&token), None).await;
    assert_eq!((status, members["items"].as_array().map(Vec::len)), (200, Some(1)));
}

#[tokio::test]
async fn imported_bcrypt_accounts_sign_in_and_are_rehashed_to_argon2id() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(format!("palisade-import-{}", app.db.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.json");
    // Legacy passwords may be shorter than today's minimum: they were accepted elsewhere.
    let users = json!([
        {"email": "Legacy@Example.com", "name": "Legacy", "password_hash": bcrypt::hash("old-secret", 4).unwrap(), "email_verified": true},
        {"email": "second@example.com", "name": "Second", "password_hash": bcrypt::hash("another-old-one", 4).unwrap()},
    ]);
    std::fs::write(&file, users.to_string()).unwrap();
    let admin_dsn = app.db.admin_dsn();
    let import = command(&[("PALISADE_DATABASE_ADMIN_URL", admin_dsn.as_str())])
        .args(["users", "import", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8_lossy(&import.stdout).contains("Imported 2 account(s); skipped 0"));
    let again = command(&[("PALISADE_DATABASE_ADMIN_URL", admin_dsn.as_str())])
        .args(["users", "import", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("Imported 0 account(s); skipped 2"));

    let wrong = app
        .send("POST", "/api/v1/auth/login", None, Some(json!({"email": "legacy@example.com", "password": "not-it"})))
        .await;
    wrong.assert_problem(401, "invalid-credentials");
    let login = app
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "legacy@example.com", "password": "old-secret"})),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let hash: String = app
        .admin()
        .await
        .query_one("SELECT password_hash FROM palisade.users WHERE email = 'legacy@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "rehashed at first sign-in: {hash}");
    assert_eq!(
        app.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "legacy@example.com", "password": "old-secret"}))
        )
        .await
        .status,
        200
    );
    // The imported, verified account may create an organization; the unverified one may not yet.
    let token = login.body["access_token"].as_str().unwrap();
    assert_eq!(app.send("POST", "/api/v1/orgs", Some(token), Some(json!({"name": "Legacy Org"}))).await.status, 201);

    // A bad file writes nothing at all.
    let before = app.snapshot().await;
    std::fs::write(&file, json!([{"email": "ok@example.com", "name": "Ok", "password_hash": bcrypt::hash("x", 4).unwrap()}, {"email": "bad", "name": "B", "password_hash": "plaintext"}]).to_string()).unwrap();
    let bad = command(&[("PALISADE_DATABASE_ADMIN_URL", admin_dsn.as_str())])
        .args(["users", "import", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("nothing imported") && stderr.contains("entry 2"), "{stderr}");
    assert_eq!(app.snapshot().await, before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `palisade audit verify`: exit 0 on a sound chain, 1 with the position when it is broken,
/// and 1 when the chain no longer matches a checkpoint the customer kept.
#[tokio::test]
async fn audit_verify_exits_non_zero_and_names_the_position_when_the_chain_is_broken() {
    let app = TestApp::spawn().await;
    let (owner, org) = app.owner_of("owner@example.com", "Crew").await;
    for name in ["one", "two", "three"] {
        app.send(
            "POST",
            &format!("/api/v1/orgs/{org}/collections"),
            Some(&owner),
            Some(serde_json::json!({"name": name, "schema": {"type": "object"}})),
        )
        .await;
    }
    let (dsn, admin_dsn) = (app.db.runtime_dsn(), app.db.admin_dsn());
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--org", org.as_str()];
        args.extend_from_slice(extra);
        command(&[("PALISADE_DATABASE_URL", &dsn), ("PALISADE_DATABASE_ADMIN_URL", &admin_dsn)])
            .args(args)
            .output()
            .unwrap()
    };
    let sound = verify(&[]);
    let text = String::from_utf8_lossy(&sound.stdout).into_owned();
    assert_eq!(sound.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&sound.stderr));
    assert!(text.contains("chain VALID — 4 events recomputed"), "{text}");

    // Keep a checkpoint, then rewrite event 2 and re-hash everything after it.
    app.app.seal_audit().await.unwrap();
    let admin = app.admin().await;
    admin
        .batch_execute("UPDATE palisade.audit_chain_heads SET checkpointed_at = checkpointed_at - interval '2 hours'")
        .await
        .unwrap();
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 1);
    let kept = app.get(&format!("/api/v1/orgs/{org}/audit-checkpoints/latest"), Some(&owner)).await;
    let path = std::env::temp_dir().join(format!("palisade-checkpoint-{}.json", app.db.name));
    std::fs::write(&path, kept.text.as_bytes()).unwrap();
    let path = path.to_str().unwrap().to_owned();
    assert_eq!(verify(&["--checkpoint", &path]).status.code(), Some(0));

    admin.batch_execute("UPDATE palisade.audit_events SET details = '{\"collection\": \"evil\"}' WHERE action = 'collection.created' AND details->>'collection' = 'two'").await.unwrap();
    let broken = verify(&["--json"]);
    assert_eq!(broken.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!((report["valid"].as_bool(), report["first_bad_seq"].as_i64()), (Some(false), Some(3)), "{report}");
    let human = verify(&[]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("chain BROKEN at position 3"));

    let org_uuid = org.parse::<palisade_core::OrgId>().unwrap().as_uuid();
    crate::audit::rehash_history(&admin, org_uuid).await;
    assert_eq!(verify(&[]).status.code(), Some(0), "rehashed: consistent on its own");
    let caught = verify(&["--checkpoint", &path]);
    assert_eq!(caught.status.code(), Some(1), "{}", String::from_utf8_lossy(&caught.stdout));
    assert!(String::from_utf8_lossy(&caught.stdout).contains("differs from the checkpoint"));
    let bad = verify(&["--checkpoint", "/nonexistent.json"]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reading /nonexistent.json"));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn keys_commands_list_rotate_and_revoke_the_signing_key_a_running_server_uses() {
    let app = TestApp::spawn().await;
    let token = app.user("cli-keys@example.com").await;
    let first_kid = palisade_testkit::jwt_parts(&token).0["kid"].as_str().unwrap().to_owned();
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let envs = [
        ("PALISADE_DATABASE_URL", app.db.runtime_dsn()),
        ("PALISADE_INSTANCE_KEY_FILE", key_file),
        ("PALISADE_KEK_FILE", kek_file),
        ("PALISADE_KEY_STORE_FILE", store_file),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| {
        let out = command(&envs).arg("keys").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, list, _) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert!(list.lines().any(|l| l.starts_with(&first_kid) && l.contains("signing")), "{list}");

    let (code, rotated, err) = run(&["rotate-signing"]);
    assert_eq!(code, Some(0), "{err}");
    let new_kid = rotated.split_whitespace().next().unwrap().to_owned();
    assert!(new_kid.starts_with("ed25519-") && new_kid != first_kid, "{rotated}");
    // The running server picks the change up on its next reload (every second in `serve`).
    app.app.reload_token_keys().await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200, "the retired key's tokens still work");
    let fresh = app.login("cli-keys@example.com").await;
    assert_eq!(palisade_testkit::jwt_parts(&fresh).0["kid"], json!(new_kid));

    let (code, _, err) = run(&["revoke-signing", &first_kid]);
    assert_eq!(code, Some(0), "{err}");
    app.app.reload_token_keys().await.unwrap();
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthenticated");
    assert_eq!(app.get("/api/v1/me", Some(&fresh)).await.status, 200);
    let (_, list, _) = run(&["list"]);
    assert!(list.lines().any(|l| l.starts_with(&first_kid) && l.contains("revoked")), "{list}");
    assert!(list.lines().any(|l| l.starts_with(&new_kid) && l.contains("signing")), "{list}");

    let (code, _, err) = run(&["revoke-signing", &first_kid]);
    assert_eq!(code, Some(1));
    assert!(err.contains("palisade keys list"), "says what to do next: {err}");
}

/// The server holds keys and sessions in memory: it must never leave them in a core file.
#[tokio::test]
async fn the_server_process_never_dumps_core() {
    let app = TestApp::spawn().await;
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let server = Server::start(&[
        ("PALISADE_DATABASE_URL", &app.db.runtime_dsn()),
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
