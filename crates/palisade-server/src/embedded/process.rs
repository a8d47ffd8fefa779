//! Running the PostgreSQL binaries: initdb, the postmaster, readiness, shutdown.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
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

/// A postmaster this process started, and the thread that keeps it running.
pub struct Postmaster {
    keeper: Arc<Keeper>,
}

/// What the keeper thread and `stop` share.
struct Keeper {
    state: Mutex<KeeperState>,
    changed: Condvar,
}

#[derive(Default)]
struct KeeperState {
    /// The running postmaster (none while the keeper waits to start it again).
    pid: Option<i32>,
    /// `stop` was called: do not start it again.
    stopping: bool,
    /// The keeper thread is done (the postmaster has exited after `stop`).
    finished: bool,
}

impl Keeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pause before starting a postmaster that exited on its own again: it doubles up to this.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(10);

impl Postmaster {
    /// Starts the postmaster from a thread that lives as long as the process, with a
    /// parent-death signal: if this process dies (even by kill -9), PostgreSQL shuts down
    /// cleanly instead of lingering. The same thread supervises it: a postmaster that exits
    /// without `stop` (killed, or given up after a crash it could not recover from, such as a
    /// full disk during crash recovery) is started again, after a pause that grows to 10 s.
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
        let keeper = Arc::new(Keeper { state: Mutex::new(KeeperState::default()), changed: Condvar::new() });
        let (sender, receiver) = std::sync::mpsc::channel();
        let shared = keeper.clone();
        let layout = layout.clone();
        std::thread::Builder::new()
            .name("embedded-postgres-keeper".into())
            .spawn(move || {
                // The parent-death signal is tied to the thread that forked: this thread forks
                // every postmaster and lives as long as one may run.
                let child = match command.spawn() {
                    Ok(child) => child,
                    Err(err) => {
                        let _ = sender.send(Err(err));
                        return;
                    }
                };
                shared.lock().pid = Some(child.id() as i32);
                let _ = sender.send(Ok(()));
                keep(&shared, &layout, &mut command, child);
            })
            .context("starting the embedded PostgreSQL keeper thread")?;
        receiver.recv().context("embedded PostgreSQL keeper thread")?.context("starting postgres")?;
        Ok(Self { keeper })
    }

    /// Fast shutdown (open transactions roll back), escalating to immediate shutdown after 30 s.
    pub fn stop(self) -> Result<()> {
        let keeper = &self.keeper;
        let mut state = keeper.lock();
        state.stopping = true;
        keeper.changed.notify_all();
        if let Some(pid) = state.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let started = Instant::now();
        let mut escalated = false;
        while !state.finished {
            if !escalated && started.elapsed() > Duration::from_secs(30) {
                if let Some(pid) = state.pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
                }
                escalated = true;
            }
            state = keeper
                .changed
                .wait_timeout(state, Duration::from_millis(200))
                .map(|(s, _)| s)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        Ok(())
    }
}

/// The keeper thread's loop: wait for the postmaster; unless `stop` asked for it, start it again.
fn keep(keeper: &Keeper, layout: &Layout, command: &mut Command, mut child: Child) {
    let mut pause = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let status = child.wait();
        let mut state = keeper.lock();
        state.pid = None;
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        // Wait out the pause (or until `stop`), then start it again.
        loop {
            if state.stopping {
                state.finished = true;
                keeper.changed.notify_all();
                return;
            }
            tracing::error!(
                status = ?status.as_ref().map(|s| s.to_string()),
                pause_ms = pause.as_millis() as u64,
                "the embedded PostgreSQL exited on its own; starting it again (see {})",
                layout.log_hint()
            );
            state = keeper.changed.wait_timeout(state, pause).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
            if state.stopping {
                continue;
            }
            pause = (pause * 2).min(MAX_RESTART_PAUSE);
            // A postmaster.pid left by the killed postmaster names a dead process: remove it.
            let _ = running_postmaster(layout);
            match command.spawn() {
                Ok(next) => {
                    state.pid = Some(next.id() as i32);
                    child = next;
                    break;
                }
                Err(err) => tracing::error!(error = %err, "starting the embedded PostgreSQL again failed"),
            }
        }
    }
}
