//! A real `redis-server` for tests of limits shared across nodes: private, on a Unix socket in
//! a fresh directory (or TLS-only on a loopback port), no persistence; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    url: String,
    socket: Option<PathBuf>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one on a Unix socket and waits until it answers. Panics (with what to install) if
    /// it cannot.
    pub fn start() -> Self {
        let dir = fresh_dir();
        let socket = dir.join("redis.sock");
        let mut child =
            spawn(redis(&dir).args(["--port", "0", "--unixsocketperm", "700"]).arg("--unixsocket").arg(&socket));
        wait_until(&mut child, &dir, || socket.exists());
        Self { child: Some(child), url: format!("redis+unix://{}", socket.display()), socket: Some(socket), dir }
    }

    /// Starts one that speaks only TLS, on a free port of 127.0.0.1, with the PEM certificate
    /// `cert` and its `key` (`ca`: what redis-server wants named, though it asks clients for no
    /// certificate). `url()` is `rediss://127.0.0.1:<port>`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        let dir = fresh_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut child = spawn(
            redis(&dir)
                .args([
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--tls-auth-clients",
                    "no",
                    "--tls-port",
                    &port.to_string(),
                ])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca),
        );
        // (The port was free a moment ago; if something took it since, redis-server exits and
        // wait_until says so with its log.)
        wait_until(&mut child, &dir, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self { child: Some(child), url: format!("rediss://127.0.0.1:{port}"), socket: None, dir }
    }

    /// The URL a node is given (`PALISADE_REDIS_URL`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Kills the server (to show what nodes do without it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fresh_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("palisade-redis-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("redis directory");
    dir
}

/// redis-server with no persistence, working in `dir`.
fn redis(dir: &Path) -> Command {
    let mut command = Command::new("redis-server");
    command
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn spawn(command: &mut Command) -> Child {
    command
        .spawn()
        .expect("redis-server not found: install it (apt-get install redis-server; scripts/ensure-deps.sh test does)")
}

/// Waits for `ready`; panics with redis-server's log if it exits first or takes over 20 s.
fn wait_until(child: &mut Child, dir: &Path, ready: impl Fn() -> bool) {
    let started = Instant::now();
    let log = || std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited ({status}) before it answered:\n{}", log());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "redis-server did not start:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}
