//! The per-process test cluster and per-test databases.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use palisade_server::embedded::{self, EmbeddedCluster};
use palisade_store::migrate::{self, RoleName};
use secrecy::ExposeSecret;

const TEMPLATE: &str = "palisade_template";
pub const RUNTIME_ROLE: &str = "palisade_app";

struct TestCluster {
    cluster: EmbeddedCluster,
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

fn data_dir_for(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("palisade-test-{pid}"))
}

/// This test process's directory (cluster, per-test data directories).
pub fn data_dir() -> PathBuf {
    data_dir_for(std::process::id())
}

fn cluster() -> &'static TestCluster {
    CLUSTER.get_or_init(|| {
        // Started on a thread of its own: the caller may be inside an async runtime.
        std::thread::spawn(start_cluster).join().expect("test cluster start panicked")
    })
}

fn start_cluster() -> TestCluster {
    crate::scratch::remove_stale("palisade-test-");
    let data_dir = data_dir_for(std::process::id());
    // 0711: the postgres system user (when tests run as root) may traverse to its own files.
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(&data_dir).expect("test data dir");
    let options = embedded::Options {
        // Durability is not under test here (the crash tests use their own clusters): trade it for speed.
        settings: vec![
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "max_connections=400".into(),
        ],
    };
    let cluster = EmbeddedCluster::start(&data_dir, &options).expect("embedded PostgreSQL for tests");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let postgres = palisade_server::database::connect(&cluster.admin_config("postgres")).await.expect("admin");
        postgres.batch_execute(&format!("DROP DATABASE IF EXISTS {TEMPLATE}")).await.expect("drop template");
        postgres.batch_execute(&format!("CREATE DATABASE {TEMPLATE}")).await.expect("create template");
        let mut template = palisade_server::database::connect(&cluster.admin_config(TEMPLATE)).await.expect("template");
        let role = RoleName::parse(RUNTIME_ROLE).expect("role name");
        migrate::migrate(&mut template, &role, cluster.login_passwords()).await.expect("migrate template");
    });
    TestCluster { cluster }
}

/// A database of its own for one test, cloned from the migrated template.
pub struct TestDb {
    pub name: String,
}

pub async fn fresh_database() -> TestDb {
    let test_cluster = cluster();
    let name = format!("t{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let postgres =
        palisade_server::database::connect(&test_cluster.cluster.admin_config("postgres")).await.expect("admin");
    postgres.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}")).await.expect("create test database");
    // A database's privileges are not copied from its template: take TEMPORARY away as
    // `migrate` does for a real one.
    let runtime = RoleName::parse(RUNTIME_ROLE).expect("role name");
    let (keys, signin) = (runtime.keys_role().expect("keys role"), runtime.signin_role().expect("signin role"));
    migrate::revoke_temporary(&postgres, &name, &[&runtime, &keys, &signin]).await.expect("revoke TEMPORARY");
    TestDb { name }
}

impl TestDb {
    pub fn admin_config(&self) -> tokio_postgres::Config {
        cluster().cluster.admin_config(&self.name)
    }

    pub fn runtime_config(&self) -> tokio_postgres::Config {
        cluster().cluster.runtime_config(RUNTIME_ROLE, &self.name)
    }

    /// The key jobs' login (`palisade_app_keys`): rotation and shredding.
    pub fn keys_config(&self) -> tokio_postgres::Config {
        cluster().cluster.keys_config(RUNTIME_ROLE, &self.name)
    }

    /// The sign-in login (`palisade_app_signin`): the transactions that open a session.
    pub fn signin_config(&self) -> tokio_postgres::Config {
        cluster().cluster.signin_config(RUNTIME_ROLE, &self.name)
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        palisade_server::database::connect(&self.admin_config()).await.expect("admin connection")
    }

    pub async fn runtime(&self) -> tokio_postgres::Client {
        palisade_server::database::connect(&self.runtime_config()).await.expect("runtime connection")
    }

    /// A key-value connection string for the runtime role (for running the binary).
    pub fn runtime_dsn(&self) -> String {
        self.dsn(RUNTIME_ROLE, cluster().cluster.runtime_password().expose_secret())
    }

    /// A key-value connection string for the key jobs' login (PALISADE_DATABASE_KEYS_URL).
    pub fn keys_dsn(&self) -> String {
        self.dsn(&format!("{RUNTIME_ROLE}_keys"), cluster().cluster.keys_password().expose_secret())
    }

    /// A key-value connection string for the sign-in login (PALISADE_DATABASE_SIGNIN_URL).
    pub fn signin_dsn(&self) -> String {
        self.dsn(&format!("{RUNTIME_ROLE}_signin"), cluster().cluster.signin_password().expose_secret())
    }

    /// A key-value connection string for an arbitrary role with a password.
    pub fn dsn(&self, user: &str, password: &str) -> String {
        let socket = cluster().cluster.layout().socket_dir().display().to_string();
        format!("host={socket} port=5432 user={user} password={password} dbname={}", self.name)
    }

    /// The superuser's connection string (for the "refuses a superuser" test).
    pub fn admin_dsn(&self) -> String {
        let config = self.admin_config();
        let password = String::from_utf8_lossy(config.get_password().unwrap_or_default()).into_owned();
        self.dsn(embedded::ADMIN_ROLE, &password)
    }
}
