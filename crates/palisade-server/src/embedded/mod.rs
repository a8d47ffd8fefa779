//! The embedded PostgreSQL: a private cluster from the system's binaries, on a Unix socket only,
//! in a directory only the cluster's user can enter, with SCRAM passwords (never `trust`).
//!
//! Run as root, the cluster runs as the `postgres` system user (initdb refuses root). Its files
//! live under `<data-dir>/pg` when that user can reach them, otherwise under
//! `/var/lib/palisade/clusters/<hash of the data dir>` (for example when the data directory is
//! under /root, mode 0700). Passwords live in `<data-dir>/embedded-pg/`, mode 0600.

mod layout;
mod process;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};

pub use layout::Layout;
use process::Postmaster;

/// The superuser created by initdb; used only for migrations and maintenance.
pub const ADMIN_ROLE: &str = "palisade_admin";
/// The database the server uses inside the embedded cluster.
pub const DATABASE: &str = "palisade";

/// Options beyond the data directory.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra `-c name=value` settings (the test kit turns fsync off, for speed).
    pub settings: Vec<String>,
}

/// A running (or attached) embedded cluster.
pub struct EmbeddedCluster {
    layout: Layout,
    postmaster: Option<Postmaster>,
    admin_password: SecretString,
    runtime_password: SecretString,
    keys_password: SecretString,
    signin_password: SecretString,
}

impl EmbeddedCluster {
    /// Starts the cluster for `data_dir`, creating it on first use. If a postmaster of this
    /// cluster is already running and answering (another `palisade` command started it), attaches
    /// to it instead and leaves it running on `stop`.
    pub fn start(data_dir: &Path, options: &Options) -> Result<Self> {
        let layout = Layout::resolve(data_dir)?;
        let admin_password = layout.read_or_create_secret("admin.password")?;
        let runtime_password = layout.read_or_create_secret("runtime.password")?;
        let keys_password = layout.read_or_create_secret("keys.password")?;
        let signin_password = layout.read_or_create_secret("signin.password")?;
        layout.prepare_directories()?;
        if !layout.pgdata().join("PG_VERSION").exists() {
            eprintln!("Creating the embedded PostgreSQL cluster in {} (first start)…", layout.pgdata().display());
            process::initdb(&layout, &admin_password)?;
        }
        layout.write_hba()?;
        let postmaster = match process::running_postmaster(&layout)? {
            Some(pid) => {
                if process::wait_until_accepting(&layout, std::time::Duration::from_secs(10)).is_ok() {
                    tracing::info!(pid, "attached to the running embedded PostgreSQL");
                    None
                } else {
                    process::stop_pid(pid)?;
                    Some(Postmaster::spawn(&layout, options)?)
                }
            }
            None => Some(Postmaster::spawn(&layout, options)?),
        };
        process::wait_until_accepting(&layout, std::time::Duration::from_secs(60))
            .with_context(|| format!("embedded PostgreSQL did not start; see {}", layout.log_hint()))?;
        Ok(Self { layout, postmaster, admin_password, runtime_password, keys_password, signin_password })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn config(&self, user: &str, password: &SecretString, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.layout.socket_dir())
            .port(process::PORT)
            .user(user)
            .password(password.expose_secret())
            .dbname(dbname)
            .application_name("palisade");
        config
    }

    /// Superuser connection settings, for migrations and checks.
    pub fn admin_config(&self, dbname: &str) -> tokio_postgres::Config {
        self.config(ADMIN_ROLE, &self.admin_password, dbname)
    }

    /// Runtime-role connection settings, for serving requests.
    pub fn runtime_config(&self, role: &str, dbname: &str) -> tokio_postgres::Config {
        self.config(role, &self.runtime_password, dbname)
    }

    pub fn runtime_password(&self) -> &SecretString {
        &self.runtime_password
    }

    pub fn keys_password(&self) -> &SecretString {
        &self.keys_password
    }

    /// The key jobs' login (`<runtime role>_keys`) connection settings.
    pub fn keys_config(&self, runtime_role: &str, dbname: &str) -> tokio_postgres::Config {
        self.config(&format!("{runtime_role}_keys"), &self.keys_password, dbname)
    }

    pub fn signin_password(&self) -> &SecretString {
        &self.signin_password
    }

    /// The sign-in login (`<runtime role>_signin`) connection settings.
    pub fn signin_config(&self, runtime_role: &str, dbname: &str) -> tokio_postgres::Config {
        self.config(&format!("{runtime_role}_signin"), &self.signin_password, dbname)
    }

    /// What `migrate` gives the runtime role, the key jobs' login and the sign-in login.
    pub fn login_passwords(&self) -> palisade_store::migrate::LoginPasswords<'_> {
        palisade_store::migrate::LoginPasswords {
            runtime: Some(&self.runtime_password),
            keys: Some(&self.keys_password),
            signin: Some(&self.signin_password),
        }
    }

    /// Stops the postmaster if this process started it (fast shutdown: open transactions are
    /// rolled back, committed data is safe).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(postmaster) = self.postmaster.take() {
            postmaster.stop()?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("warning: stopping the embedded PostgreSQL failed: {err:#}");
        }
    }
}

/// Creates the server's database in the cluster if it is missing.
pub async fn ensure_database(admin: &tokio_postgres::Client, name: &str) -> Result<()> {
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name {name:?} must be letters, digits and _");
        }
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
    }
    Ok(())
}

/// Where the data directory resolves to, for messages.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
