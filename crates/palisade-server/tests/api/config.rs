//! The configuration as the binary reads it (file, environment, flags; secrets redacted) and
//! `controls check` run from the command line.

use serde_json::Value;

use crate::support::command;
use palisade_testkit::TestApp;

#[tokio::test]
async fn config_check_redacts_secrets_and_controls_check_reports_json() {
    let app = TestApp::spawn().await;
    let dsn = app.db.runtime_dsn();
    let password = dsn.split("password=").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    let config = command(&[("PALISADE_DATABASE_URL", &dsn)]).args(["config", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(config.status.success());
    assert!(text.contains("password=***") && !text.contains(&password), "{text}");
    assert!(text.contains("database = \"external\""));

    // The checks of encryption at rest (E4, E5) open the key provider this server wrapped its keys with.
    let keys = app.key_envs();
    let with_keys = |envs: &[(&'static str, &str)]| {
        let mut all: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(envs);
        command(&all)
    };
    let check = with_keys(&[("PALISADE_DATABASE_URL", &dsn)]).args(["controls", "check", "--json"]).output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&check.stdout)
    );
    let results: Value = serde_json::from_slice(&check.stdout).unwrap();
    let statuses: Vec<(&str, &str)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("T1", "PASS"),
            ("T2", "PASS"),
            ("T3", "PASS"),
            ("Z1", "PASS"),
            ("A1", "PASS"),
            ("A3", "PASS"),
            ("A4", "PASS"),
            ("L1", "PASS"),
            ("L4", "SKIP"),
            ("E1", "SKIP"),
            ("P1", "PASS"),
            ("P2", "SKIP"),
            ("P4", "SKIP"),
            ("E2", "SKIP"),
            ("E3", "PASS"),
            ("E4", "SKIP"),
            ("E5", "PASS")
        ]
    );
    // With the operator's connection, every organization's audit chain is verified too; with
    // the key jobs' login, every organization's data keys.
    let (admin_dsn, keys_dsn) = (app.db.admin_dsn(), app.db.keys_dsn());
    let with_admin = with_keys(&[
        ("PALISADE_DATABASE_URL", &dsn),
        ("PALISADE_DATABASE_ADMIN_URL", &admin_dsn),
        ("PALISADE_DATABASE_KEYS_URL", &keys_dsn),
    ])
    .args(["controls", "check", "--json"])
    .output()
    .unwrap();
    let results: Value = serde_json::from_slice(&with_admin.stdout).unwrap();
    for id in ["L4", "E2", "E3", "E4", "E5"] {
        let result = results.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap();
        assert_eq!(result["status"], "PASS", "{result}");
    }

    app.admin().await.batch_execute("ALTER TABLE palisade.orgs NO FORCE ROW LEVEL SECURITY").await.unwrap();
    let broken = with_keys(&[("PALISADE_DATABASE_URL", &dsn)]).args(["controls", "check"]).output().unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let table = String::from_utf8_lossy(&broken.stdout);
    assert!(table.lines().any(|l| l.starts_with("T1") && l.contains("FAIL")), "{table}");
}

#[tokio::test]
async fn configuration_comes_from_a_toml_file_then_the_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("palisade-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("palisade.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9001\"\nsession_idle_minutes = 15\nruntime_role = \"from_file\"\n\
         [rate_limits]\nstandard = 80\nenterprise = 1500\non_redis_failure = \"closed\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = command(&[
        ("PALISADE_CONFIG", path),
        ("PALISADE_RUNTIME_ROLE", "from_env"),
        ("PALISADE_RATE_LIMITS", "off"),
        ("PALISADE_RATE_LIMITS__ENTERPRISE", "1200"),
    ])
    .args(["config", "check"])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9001\""), "{text}");
    assert!(text.contains("session_idle_minutes = 15"), "{text}");
    assert!(text.contains("runtime_role = \"from_env\""), "environment wins over the file: {text}");
    assert!(
        text.contains("rate_limits = { mode = \"off\", anonymous = 10, standard = 80, professional = 500, enterprise = 1200, auth = 5, on_redis_failure = \"closed\" }"),
        "[rate_limits] from the file, PALISADE_RATE_LIMITS and a __ variable over it: {text}"
    );
    let flagged = command(&[("PALISADE_CONFIG", path)])
        .args(["--data-dir", "/srv/palisade", "config", "check"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&flagged.stdout).contains("data_dir = \"/srv/palisade\""));
    std::fs::write(&file, "[rate_limits]\nmode = \"sometimes\"\n").unwrap();
    let bad = command(&[("PALISADE_CONFIG", path)]).args(["config", "check"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown mode is refused");
    let bad = command(&[("PALISADE_RATE_LIMITS", "maybe")]).args(["config", "check"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PALISADE_RATE_LIMITS must be on or off"));
    std::fs::write(&file, "no_such_key = 1\n").unwrap();
    let bad = command(&[("PALISADE_CONFIG", path)]).args(["config", "check"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_key"), "{}", String::from_utf8_lossy(&bad.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
