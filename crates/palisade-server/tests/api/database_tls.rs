//! PostgreSQL over TLS under the real binary: a cluster that accepts only TLS connections over
//! TCP (on 127.0.0.3, with a certificate for the name `palisade-db.test` from a test CA) stands
//! for a database on another machine: URLs name it `host=palisade-db.test hostaddr=127.0.0.3`
//! (dial that address, check that name). Every pool of `serve` reaches it over verified TLS with
//! no `sslmode` at all; a server that does not trust the CA, or that reaches the cluster by a
//! name its certificate does not carry, refuses to start and says what to set.
//! (127.0.0.3:5432 must be free: a PostgreSQL listening on every address would take it.)

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use palisade_server::embedded::{self, EmbeddedCluster};
use palisade_store::migrate::{self, RoleName};
use secrecy::ExposeSecret;

use crate::support::{Server, certificate_authority, command, refused_start, scratch_dir, server_certificate};

const ADDRESS: &str = "127.0.0.3";
/// The name in the cluster's certificate: not this machine's, so the default policy is TLS.
const REMOTE: &str = "host=palisade-db.test hostaddr=127.0.0.3";
const ROLE: &str = "palisade_app";

/// A cluster listening on `ADDRESS` for TLS only (`hostssl` is its one TCP rule), migrated.
struct TlsCluster {
    cluster: EmbeddedCluster,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

impl TlsCluster {
    /// Key-value connection settings for `user` over TCP: `host` (and `hostaddr`, `sslmode`, …).
    fn dsn(&self, user: &str, password: &str, host: &str) -> String {
        format!("{host} port=5432 user={user} password={password} dbname={}", embedded::DATABASE)
    }

    /// The environment for `serve` against this cluster as `host`: runtime, sign-in and key-job
    /// logins.
    fn envs(&self, host: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PALISADE_DATABASE_URL", self.dsn(ROLE, self.cluster.runtime_password().expose_secret(), host)),
            (
                "PALISADE_DATABASE_SIGNIN_URL",
                self.dsn(&format!("{ROLE}_signin"), self.cluster.signin_password().expose_secret(), host),
            ),
            (
                "PALISADE_DATABASE_KEYS_URL",
                self.dsn(&format!("{ROLE}_keys"), self.cluster.keys_password().expose_secret(), host),
            ),
        ]
    }
}

fn refs<'a>(envs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn start_tls_cluster() -> TlsCluster {
    let root = scratch_dir("pg-tls");
    let data_dir = root.join("data");
    // 0711: the postgres system user (when tests run as root) may traverse to its own files.
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(&data_dir).unwrap();
    let (ca, ca_file) = certificate_authority(&root, "database-ca");
    let (_, other_ca_file) = certificate_authority(&root, "other-ca");
    let (certificate, server_key) = server_certificate(&ca, "palisade-db.test");
    // The server's files go where the cluster's user can surely reach them: beside its data
    // (a first start makes that place; the second start, below, listens for TLS).
    let mut plain = EmbeddedCluster::start(&data_dir, &embedded::Options::default()).unwrap();
    plain.stop().unwrap();
    let layout = plain.layout();
    let files = layout.cluster_root().join("tls-files");
    std::fs::DirBuilder::new().mode(0o700).create(&files).unwrap();
    layout.give_to_cluster_user(&files).unwrap();
    let hba = "local all all scram-sha-256\nhostssl all all 127.0.0.0/8 scram-sha-256\n";
    for (name, text) in [("server.crt", certificate), ("server.key", server_key), ("pg_hba.conf", hba.into())] {
        let path = files.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        layout.give_to_cluster_user(&path).unwrap();
    }
    let setting = |name: &str, file: &str| format!("{name}={}", files.join(file).display());
    let options = embedded::Options {
        settings: vec![
            format!("listen_addresses={ADDRESS}"),
            "ssl=on".into(),
            setting("ssl_cert_file", "server.crt"),
            setting("ssl_key_file", "server.key"),
            setting("hba_file", "pg_hba.conf"),
            "fsync=off".into(),
        ],
    };
    let cluster = EmbeddedCluster::start(&data_dir, &options).expect("a cluster listening on 127.0.0.3:5432");
    TlsCluster { cluster, ca_file, other_ca_file }
}

async fn migrated(tls: &TlsCluster) {
    let admin = palisade_server::database::connect(&tls.cluster.admin_config("postgres")).await.unwrap();
    embedded::ensure_database(&admin, embedded::DATABASE).await.unwrap();
    let mut client = palisade_server::database::connect(&tls.cluster.admin_config(embedded::DATABASE)).await.unwrap();
    migrate::migrate(&mut client, &RoleName::parse(ROLE).unwrap(), tls.cluster.login_passwords()).await.unwrap();
}

/// (login, TLS in use, TLS version) of every connection the server's logins hold.
async fn connections(tls: &TlsCluster) -> Vec<(String, bool, String)> {
    let admin = palisade_server::database::connect(&tls.cluster.admin_config(embedded::DATABASE)).await.unwrap();
    let rows = admin
        .query(
            "SELECT a.usename::text, s.ssl, coalesce(s.version, '') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.usename::text LIKE 'palisade_app%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect()
}

#[tokio::test]
async fn every_pool_reaches_a_remote_database_over_verified_tls_and_refuses_an_unverified_one() {
    let tls = start_tls_cluster();
    migrated(&tls).await;
    let ca_file = tls.ca_file.display().to_string();

    // Trusting the CA, with no sslmode in the URLs: the server starts, serves sign-up and
    // sign-in, and every one of its connections is TLS 1.3.
    let mut envs = tls.envs(REMOTE);
    envs.push(("PALISADE_DATABASE_CA_FILE", ca_file.clone()));
    let mut server = Server::start(&refs(&envs));
    server.verified_user("tls@example.com").await;
    let held = connections(&tls).await;
    let logins: std::collections::BTreeSet<&str> = held.iter().map(|(login, _, _)| login.as_str()).collect();
    assert!(logins.contains(ROLE) && logins.contains("palisade_app_signin"), "{held:?}");
    assert!(held.iter().all(|(_, ssl, version)| *ssl && version == "TLSv1.3"), "{held:?}");
    server.terminate();
    // `controls check` says so under E1 (still a skip: the listener needs --url).
    let check = command(&refs(&envs)).args(["controls", "check", "--json"]).output().unwrap();
    let results: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let e1 = results.as_array().unwrap().iter().find(|r| r["id"] == "E1").unwrap();
    assert!(e1["evidence"].as_str().unwrap().contains("database connection over TLSv1.3"), "{e1}");
    assert_eq!(e1["status"], "SKIP", "{e1}");

    // By its address: 127.0.0.3 is this machine, so no TLS is attempted, and the cluster (TLS
    // only over TCP) turns the connection away: the server refuses to start.
    let mut plain = tls.envs(&format!("host={ADDRESS}"));
    plain.push(("PALISADE_DATABASE_CA_FILE", ca_file.clone()));
    let output = refused_start(&refs(&plain), &scratch_dir("tls-plain"));
    assert!(output.contains("no encryption"), "{output}");

    // Not trusting the CA (Mozilla's roots by default, or another CA): refused, with what to set,
    // and no password in the output.
    let output = refused_start(&refs(&tls.envs(REMOTE)), &scratch_dir("tls-untrusted"));
    assert!(output.contains("UnknownIssuer") && output.contains("PALISADE_DATABASE_CA_FILE"), "{output}");
    assert!(!output.contains(tls.cluster.runtime_password().expose_secret()), "a password is in the output: {output}");
    let mut other = tls.envs(REMOTE);
    other.push(("PALISADE_DATABASE_CA_FILE", tls.other_ca_file.display().to_string()));
    let output = refused_start(&refs(&other), &scratch_dir("tls-other-ca"));
    assert!(output.contains("UnknownIssuer") && output.contains("PALISADE_DATABASE_CA_FILE"), "{output}");

    // A CA file that is not there: every command stops before connecting, and says which file.
    let missing =
        command(&[("PALISADE_DATABASE_CA_FILE", "/nonexistent/ca.pem")]).args(["controls", "check"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("/nonexistent/ca.pem") && said.contains("cannot be read"), "{said}");

    // The right CA, but the cluster reached as `localhost` with TLS asked for: its certificate
    // names only palisade-db.test, so the name check fails.
    let mut renamed = tls.envs(&format!("host=localhost hostaddr={ADDRESS} sslmode=require"));
    renamed.push(("PALISADE_DATABASE_CA_FILE", ca_file.clone()));
    let output = refused_start(&refs(&renamed), &scratch_dir("tls-name"));
    assert!(output.contains("not valid for name") && output.contains("PALISADE_DATABASE_CA_FILE"), "{output}");

    // libpq's own TLS options are not taken, and the error says what to use instead.
    let mut libpq = tls.envs(&format!("{REMOTE} sslrootcert={ca_file}"));
    libpq.push(("PALISADE_DATABASE_CA_FILE", ca_file));
    let output = refused_start(&refs(&libpq), &scratch_dir("tls-libpq"));
    assert!(output.contains("sslrootcert") && output.contains("PALISADE_DATABASE_CA_FILE"), "{output}");
}
