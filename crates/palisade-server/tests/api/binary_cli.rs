//! The `palisade` CLI tools against real databases: admin grant, migrate (and serving as the
//! role it creates), a non-superuser schema owner, bcrypt import, audit verify, signing keys.

use crate::support::{Server, call, command, run_keys};

use palisade_testkit::{PASSWORD, TestApp};
use serde_json::{Value, json};

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
    let signin_dsn = swap_db(app.db.dsn(&format!("{role}_signin"), "signin-secret-for-test"));
    let envs = [
        ("PALISADE_DATABASE_ADMIN_URL", admin_dsn.as_str()),
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin_dsn.as_str()),
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

    // The instance audit retention: written by a migrate that is given one, kept by one that is
    // not (a run without the setting never shortens a longer retention set before).
    let (ext, connection) = tokio_postgres::connect(&admin_dsn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let retention_query = "SELECT retention_days FROM palisade.instance_audit";
    assert_eq!(ext.query_one(retention_query, &[]).await.unwrap().get::<_, i32>(0), 730);
    let longer = [envs.as_slice(), &[("PALISADE_INSTANCE_AUDIT_RETENTION_DAYS", "3650")]].concat();
    assert!(command(&longer).arg("migrate").output().unwrap().status.success());
    assert_eq!(ext.query_one(retention_query, &[]).await.unwrap().get::<_, i32>(0), 3650);
    assert!(command(&envs).arg("migrate").output().unwrap().status.success());
    assert_eq!(ext.query_one(retention_query, &[]).await.unwrap().get::<_, i32>(0), 3650, "kept");

    // A runtime role that gained privileges is put back in its place by the next migrate.
    let admin = app.admin().await;
    admin.batch_execute(&format!("ALTER ROLE {role} BYPASSRLS CREATEDB")).await.unwrap();
    assert!(command(&envs).arg("migrate").output().unwrap().status.success());
    let row =
        admin.query_one("SELECT rolbypassrls, rolcreatedb FROM pg_roles WHERE rolname = $1", &[&role]).await.unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, false));

    // Without the sign-in login nobody could sign in: serve refuses and says what to set.
    let no_signin = command(&[("PALISADE_DATABASE_URL", runtime_dsn.as_str())])
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
        .output()
        .unwrap();
    assert!(!no_signin.status.success());
    let why = String::from_utf8_lossy(&no_signin.stderr);
    assert!(why.contains("PALISADE_DATABASE_SIGNIN_URL") && why.contains("_signin"), "{why}");

    let server = Server::start(&[
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin_dsn.as_str()),
    ]);
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

    // A server configured with another instance retention than the database holds (3650, from
    // the migrate above) cannot write it (the runtime role only reads it) and says what to run.
    // (The same data directory: its key file opens the instance keys the first server sealed.)
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let drifted = Server::start(&[
        ("PALISADE_DATA_DIR", data_dir.as_str()),
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin_dsn.as_str()),
        ("PALISADE_INSTANCE_AUDIT_RETENTION_DAYS", "1000"),
    ]);
    let (status, _) = call(&drifted.base_url, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{}", drifted.output());
    let warned = |output: &str| {
        output.contains("the instance audit retention in the database is not the configured one")
            && output.contains("palisade migrate")
    };
    for _ in 0..100 {
        if warned(&drifted.output()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(warned(&drifted.output()), "{}", drifted.output());
    assert!(!warned(&server.output()), "no warning without the setting: {}", server.output());
    assert_eq!(ext.query_one(retention_query, &[]).await.unwrap().get::<_, i32>(0), 3650, "unchanged");
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
    let signin_dsn = swap_db(app.db.dsn(&format!("{role}_signin"), "signin-pw-1234"));
    let migrate = command(&[
        ("PALISADE_DATABASE_ADMIN_URL", owner_dsn.as_str()),
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin_dsn.as_str()),
        ("PALISADE_RUNTIME_ROLE", role.as_str()),
    ])
    .arg("migrate")
    .output()
    .unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let server = Server::start(&[
        ("PALISADE_DATABASE_URL", runtime_dsn.as_str()),
        ("PALISADE_DATABASE_SIGNIN_URL", signin_dsn.as_str()),
        ("PALISADE_RATE_LIMITS", "off"),
    ]);
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
    assert_eq!(app.app.checkpoint_audit().await.unwrap(), 2, "the organization's chain and the instance chain");
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
    let run = |args: &[&str]| run_keys(&envs, args);
    let (code, list, _) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert!(list.lines().any(|l| l.starts_with(&first_kid) && l.contains("signing")), "{list}");

    // Access-token keys are the sign-in login's to change (0043): without it, what to set.
    let (code, _, err) = run(&["rotate-signing"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("PALISADE_DATABASE_SIGNIN_URL"), "{err}");
    let signin = app.db.signin_dsn();
    let envs = [envs.as_slice(), &[("PALISADE_DATABASE_SIGNIN_URL", signin.as_str())]].concat();
    let run = |args: &[&str]| run_keys(&envs, args);
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

/// `palisade keys rotate-bearer` replaces the key a running server proves access-token sessions
/// with (0038): with a grace, nothing anyone holds stops working; with `--now`, the old key is
/// refused at once (a node that has not reloaded yet is refused until it does). Only the sign-in
/// login may rotate; every rotation is audited.
#[tokio::test]
async fn keys_rotate_bearer_replaces_the_bearer_key_without_ending_any_token() {
    let app = TestApp::spawn().await;
    let token = app.user("cli-bearer@example.com").await;
    let first_proof = app.session_proof(&token).to_db();
    let key_file = app.instance_key_file.display().to_string();
    let (kek_file, store_file) = (app.key_envs()[1].1.clone(), app.key_envs()[2].1.clone());
    let mut envs = vec![
        ("PALISADE_DATABASE_URL", app.db.runtime_dsn()),
        ("PALISADE_INSTANCE_KEY_FILE", key_file),
        ("PALISADE_KEK_FILE", kek_file),
        ("PALISADE_KEY_STORE_FILE", store_file),
    ];
    let without_signin: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, _, err) = run_keys(&without_signin, &["rotate-bearer"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("PALISADE_DATABASE_SIGNIN_URL"), "{err}");
    envs.push(("PALISADE_DATABASE_SIGNIN_URL", app.db.signin_dsn()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let admin = app.admin().await;
    let keys = "SELECT count(*) FILTER (WHERE retire_after IS NULL), count(*) FILTER (WHERE retire_after > now()), count(*) \
                FROM palisade.bearer_key";
    let counts = |row: tokio_postgres::Row| (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2));
    let enter = "SELECT palisade.enter_session($1, now())";
    let runtime = app.runtime().await;

    let (code, out, err) = run_keys(&envs, &["rotate-bearer"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("accepted for 60 more seconds"), "{out}");
    assert_eq!(counts(admin.query_one(keys, &[]).await.unwrap()), (1, 1, 2), "one current key, one retiring");
    // The server has not reloaded: its proofs are under the old key, which is still accepted.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200);
    app.app.load_bearer_key().await.unwrap();
    let second_proof = app.session_proof(&token).to_db();
    assert_ne!(second_proof, first_proof, "the node proves with the new key");
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200, "the same access token works");
    runtime.query_one(enter, &[&first_proof]).await.unwrap();

    // A real `palisade serve` on the same database: its loop re-reads the key every second.
    let server = Server::start(&envs);
    let served = server.verified_user("served@example.com").await;
    assert_eq!(call(&server.base_url, "GET", "/api/v1/me", Some(&served), None).await.0, 200);
    // A transaction opened before the rotation (0039: retirement is by the real clock, not the
    // transaction's start).
    runtime.batch_execute("BEGIN").await.unwrap();
    runtime.query_one(enter, &[&second_proof]).await.unwrap();

    let (code, out, err) = run_keys(&envs, &["rotate-bearer", "--now"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("refused already"), "{out}");
    let refused = runtime.query_one(enter, &[&second_proof]).await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("PA401"), "{refused}");
    runtime.batch_execute("ROLLBACK").await.unwrap();
    let mut served_status = 0;
    for _ in 0..100 {
        served_status = call(&server.base_url, "GET", "/api/v1/me", Some(&served), None).await.0;
        if served_status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served_status, 200, "the serving node took the new key up by itself");
    assert_eq!(counts(admin.query_one(keys, &[]).await.unwrap()), (1, 0, 3), "both older keys refused");
    for old in [&first_proof, &second_proof] {
        let refused = runtime.query_one(enter, &[old]).await.unwrap_err();
        assert_eq!(refused.code().map(|c| c.code()), Some("PA401"), "{refused}");
    }
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthenticated");
    app.app.load_bearer_key().await.unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, 200, "after its reload, the node proves again");
    // The next rotation deletes the keys whose grace has passed: their bytes leave the table.
    app.app.rotate_bearer_key(60).await.unwrap();
    assert_eq!(counts(admin.query_one(keys, &[]).await.unwrap()), (1, 1, 2));

    let refused = runtime.query_one("SELECT palisade.rotate_bearer_key(0)", &[]).await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused}");
    let events: i64 = admin
        .query_one("SELECT count(*) FROM palisade.audit_events WHERE action = 'bearer_key.rotated'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 3);
}
