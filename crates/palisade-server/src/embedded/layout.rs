//! Where the embedded cluster's files go, who owns them, and the secrets beside them.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Uid, User, chown};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Longest socket path we accept (the kernel's limit is 107 bytes plus the terminator).
const MAX_SOCKET_PATH: usize = 100;
const RELOCATED_ROOT: &str = "/var/lib/palisade/clusters";

#[derive(Debug, Clone)]
pub struct Layout {
    data_dir: PathBuf,
    cluster_root: PathBuf,
    socket_dir: PathBuf,
    /// The user the postmaster runs as; `None` means this process's own user.
    run_as: Option<(Uid, Gid)>,
}

fn hash16(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn create_private_dir(path: &Path) -> Result<()> {
    if !path.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

impl Layout {
    pub fn resolve(data_dir: &Path) -> Result<Self> {
        create_private_dir(data_dir)?;
        let data_dir = fs::canonicalize(data_dir).with_context(|| format!("resolving {}", data_dir.display()))?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")?
                .context("running as root needs the 'postgres' system user (apt-get install postgresql)")?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let reachable = match run_as {
            None => true,
            Some((uid, gid)) => user_can_enter(&data_dir, uid, gid),
        };
        let in_place = data_dir.join("pg");
        let relocated = PathBuf::from(RELOCATED_ROOT).join(hash16(&data_dir));
        if !reachable && in_place.join("pgdata").join("PG_VERSION").exists() {
            // The cluster was created in place while the data directory was open to its user;
            // `serve` has since made the directory private (0700). Never start an empty cluster
            // elsewhere instead of this one.
            bail!(
                "the embedded cluster is in {} but the postgres user can no longer enter {} (it is private now); \
                 move the cluster where it can: mv {} {}",
                in_place.display(),
                data_dir.display(),
                in_place.display(),
                relocated.display()
            );
        }
        let cluster_root = if reachable { in_place } else { relocated };
        let mut socket_dir = cluster_root.join("sock");
        if socket_dir.as_os_str().len() + "/.s.PGSQL.5432".len() > MAX_SOCKET_PATH {
            socket_dir = std::env::temp_dir().join(format!("palisade-{}", hash16(&data_dir)));
        }
        Ok(Self { data_dir, cluster_root, socket_dir, run_as })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn cluster_root(&self) -> &Path {
        &self.cluster_root
    }
    pub fn pgdata(&self) -> PathBuf {
        self.cluster_root.join("pgdata")
    }
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
    pub fn run_as(&self) -> Option<(Uid, Gid)> {
        self.run_as
    }
    pub fn log_hint(&self) -> String {
        format!("{}/log/", self.pgdata().display())
    }

    fn secrets_dir(&self) -> PathBuf {
        self.data_dir.join("embedded-pg")
    }

    /// Reads a generated password from the data directory, creating it (mode 0600) on first use.
    pub fn read_or_create_secret(&self, name: &str) -> Result<SecretString> {
        let dir = self.secrets_dir();
        create_private_dir(&dir)?;
        let path = dir.join(name);
        if path.exists() {
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(SecretString::from(text.trim().to_owned()));
        }
        if self.pgdata().join("PG_VERSION").exists() && name == "admin.password" {
            bail!(
                "the embedded cluster at {} exists but {} is missing; restore it from a backup, or move the cluster away to start fresh",
                self.pgdata().display(),
                path.display()
            );
        }
        let mut bytes = [0u8; 32];
        getrandom(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut file, secret.as_bytes())?;
        Ok(SecretString::from(secret))
    }

    /// Creates the cluster root and socket directory, owned by the cluster's user, mode 0700.
    pub fn prepare_directories(&self) -> Result<()> {
        if let Some(parent) = self.cluster_root.parent()
            && self.cluster_root.starts_with(RELOCATED_ROOT)
            && !parent.exists()
        {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        }
        for dir in [&self.cluster_root, &self.socket_dir] {
            create_private_dir(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            self.give_to_cluster_user(dir)?;
        }
        if self.cluster_root.starts_with(RELOCATED_ROOT) {
            // Leave a note in the data directory saying where the cluster went.
            fs::write(self.secrets_dir().join("cluster-location"), format!("{}\n", self.cluster_root.display()))?;
        }
        Ok(())
    }

    pub fn give_to_cluster_user(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    /// Only local (Unix socket) connections, only with a password.
    pub fn write_hba(&self) -> Result<()> {
        let path = self.pgdata().join("pg_hba.conf");
        let text = "# Written by palisade: Unix socket only, SCRAM passwords only, never trust.\n\
                    local all all scram-sha-256\n";
        let write = || -> Result<()> {
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            self.give_to_cluster_user(&path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

fn getrandom(dest: &mut [u8]) {
    use rand::RngCore;
    rand::rngs::OsRng.fill_bytes(dest);
}

/// Whether `uid`/`gid` may traverse into `dir` (we create and hand over the cluster's own
/// directory; the user only has to reach it), decided by the kernel: a short-lived `test`
/// process runs as that user.
fn user_can_enter(dir: &Path, uid: Uid, gid: Gid) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("test -x \"$1\"")
        .arg("sh")
        .arg(dir)
        .uid(uid.as_raw())
        .gid(gid.as_raw())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
