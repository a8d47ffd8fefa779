//! Running the PostgreSQL binaries: initdb, the postmaster, readiness, shutdown.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};

use super::layout::Layout;
use super::{ADMIN_ROLE, Options};

pub const PORT: u16 = 5432;

/// Finds the PostgreSQL server binaries: `PALISADE_PG_BIN_DIR`, Debian's versioned directories
/// (newest first), then `PATH`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PALISADE_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    for version in [17, 16, 15, 14] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        if dir.join("postgres").exists() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("postgres").exists() && dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    bail!(
        "PostgreSQL server binaries not found: install them (apt-get install postgresql-15) or set PALISADE_PG_BIN_DIR"
    )
}

/// A command for a PostgreSQL binary, run as the cluster's user with a minimal environment
/// (our own environment may hold database URLs with passwords).
fn pg_command(layout: &Layout, binary: &str) -> Result<Command> {
    let mut command = Command::new(bin_dir()?.join(binary));
    command.env_clear().env("PATH", "/usr/bin:/bin").env("LC_ALL", "C").current_dir(layout.cluster_root());
    if let Some((uid, gid)) = layout.run_as() {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
    Ok(command)
}

pub fn initdb(layout: &Layout, admin_password: &SecretString) -> Result<()> {
    let pwfile = layout.cluster_root().join("initdb.pw");
    {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&pwfile)?;
        std::io::Write::write_all(&mut file, admin_password.expose_secret().as_bytes())?;
    }
    layout.give_to_cluster_user(&pwfile)?;
    let output = pg_command(layout, "initdb")?
        .arg("--pgdata")
        .arg(layout.pgdata())
        .args([
            "--username",
            ADMIN_ROLE,
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ])
        .arg("--pwfile")
        .arg(&pwfile)
        .stdin(Stdio::null())
        .output()
        .context("running initdb");
    let _ = fs::remove_file(&pwfile);
    let output = output?;
    if !output.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The pid of a live postmaster of this cluster, if one runs. A stale `postmaster.pid` (left by
/// a crash, its pid now dead or reused by another program) is removed.
pub fn running_postmaster(layout: &Layout) -> Result<Option<i32>> {
    let pid_file = layout.pgdata().join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else { return Ok(None) };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        fs::remove_file(&pid_file)?;
        return Ok(None);
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "postgres" {
        return Ok(Some(pid));
    }
    tracing::warn!(pid, "removing a stale postmaster.pid left by an earlier crash");
    fs::remove_file(&pid_file)?;
    Ok(None)
}

/// Polls `pg_isready` on the socket until the cluster accepts connections.
pub fn wait_until_accepting(layout: &Layout, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = Command::new(bin_dir()?.join("pg_isready"))
            .arg("--host")
            .arg(layout.socket_dir())
            .args(["--port", &PORT.to_string(), "--quiet"])
            .stdin(Stdio::null())
            .status()?;
        if status.success() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("the embedded PostgreSQL did not accept connections within {}s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// Fast shutdown of a postmaster by pid, escalating to immediate shutdown after 30 s.
pub fn stop_pid(pid: i32) -> Result<()> {
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    let started = Instant::now();
    while pid_alive(pid) {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A postmaster this process started.
pub struct Postmaster {
    child: Child,
}

impl Postmaster {
    /// Starts the postmaster from a thread that lives as long as the process, with a
    /// parent-death signal: if this process dies (even by kill -9), PostgreSQL shuts down
    /// cleanly instead of lingering.
    pub fn spawn(layout: &Layout, options: &Options) -> Result<Self> {
        let startup_log_path = layout.cluster_root().join("startup.log");
        let startup_log = fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&startup_log_path)?;
        layout.give_to_cluster_user(&startup_log_path)?;
        let mut command = pg_command(layout, "postgres")?;
        command
            .arg("-D")
            .arg(layout.pgdata())
            .arg("-k")
            .arg(layout.socket_dir())
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "unix_socket_permissions=0700"])
            .args(["-c", "logging_collector=on", "-c", "log_directory=log"])
            .args(["-c", "log_filename=postgresql-%a.log", "-c", "log_truncate_on_rotation=on"])
            .args(["-c", "log_rotation_age=1d", "-c", "password_encryption=scram-sha-256"]);
        for setting in &options.settings {
            command.arg("-c").arg(setting);
        }
        command.stdin(Stdio::null()).stdout(startup_log.try_clone()?).stderr(startup_log);
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs in the closure.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("embedded-postgres-keeper".into())
            .spawn(move || {
                let _ = sender.send(command.spawn());
                // The parent-death signal is tied to the thread that forked: keep it alive.
                loop {
                    std::thread::park();
                }
            })
            .context("starting the embedded PostgreSQL keeper thread")?;
        let child = receiver.recv().context("embedded PostgreSQL keeper thread")?.context("starting postgres")?;
        Ok(Self { child })
    }

    pub fn stop(mut self) -> Result<()> {
        let pid = self.child.id() as i32;
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        let started = Instant::now();
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
                self.child.wait()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
