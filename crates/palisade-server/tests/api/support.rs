//! Running the real `palisade` binary in tests: a `serve` child process with its output
//! collected, fresh data directories, and a small HTTP helper.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_testkit::PASSWORD;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// A `palisade serve` child process with its output collected.
pub struct Server {
    pub child: Child,
    output: Arc<Mutex<Vec<String>>>,
    pub base_url: String,
    pub data_dir: std::path::PathBuf,
    /// The data directory is this server's own scratch directory (no test named one): it goes,
    /// with its embedded cluster, when the server is dropped.
    owns_data_dir: bool,
}

/// A fresh directory for one server's data (its outbox, or its embedded cluster). All of this
/// process's are under `<temp>/palisade-bin-<pid>/`; the first call removes what test processes
/// that are gone left there, their relocated embedded clusters included.
pub fn scratch_dir(label: &str) -> std::path::PathBuf {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let root = ROOT.get_or_init(|| {
        palisade_testkit::remove_stale("palisade-bin-");
        std::env::temp_dir().join(format!("palisade-bin-{}", std::process::id()))
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = root.join(format!("{label}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

pub fn command(envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // Never the default ./palisade-data inside the source tree; a test may still set its own.
    command.env("PALISADE_DATA_DIR", scratch_dir("cmd"));
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// Runs `palisade keys <args>` to the end: its exit code, stdout and stderr.
pub fn run_keys(envs: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = command(envs).arg("keys").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CA (its certificate written to `name`.pem in `dir`) and the issuer to sign with.
pub fn certificate_authority(
    dir: &std::path::Path,
    name: &str,
) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, std::path::PathBuf) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("Palisade test {name}"));
    let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, issuer.pem()).unwrap();
    (issuer, path)
}

/// A server certificate for `name` (a host name or an IP address) signed by `ca`: (certificate
/// PEM, private key PEM).
pub fn server_certificate(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    (params.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

/// Runs `palisade serve` expecting it to refuse to start; returns its output.
pub fn refused_start(envs: &[(&str, &str)], data_dir: &std::path::Path) -> String {
    let mut child = command(envs)
        .env("PALISADE_DATA_DIR", data_dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "palisade started when it should have refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Server {
    /// `palisade serve --insecure-http` (most tests are not about TLS).
    pub fn start(envs: &[(&str, &str)]) -> Server {
        Self::start_with(envs, false, false)
    }

    /// `palisade serve` over HTTPS, as it runs by default; `base_url` is https.
    pub fn start_tls(envs: &[(&str, &str)]) -> Server {
        Self::start_with(envs, true, false)
    }

    /// As `start`, in a session of its own (as a service manager or `setsid` starts it).
    pub fn start_in_own_session(envs: &[(&str, &str)]) -> Server {
        Self::start_with(envs, false, true)
    }

    fn start_with(envs: &[(&str, &str)], tls: bool, own_session: bool) -> Server {
        let named = envs.iter().find(|(k, _)| *k == "PALISADE_DATA_DIR").map(|(_, v)| std::path::PathBuf::from(v));
        let owns_data_dir = named.is_none();
        let data_dir = named.unwrap_or_else(|| scratch_dir("serve"));
        let mut command = command(envs);
        if own_session {
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe and touches no memory of the parent's.
            unsafe {
                command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
            }
        }
        let mut child = command
            .env("PALISADE_DATA_DIR", &data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(if tls { None } else { Some("--insecure-http") })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start palisade");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let started = Instant::now();
        loop {
            let addr = output.lock().unwrap().iter().find_map(|line| {
                let json: Value = serde_json::from_str(line).ok()?;
                (json["message"] == "palisade is listening").then(|| json["addr"].as_str().unwrap().to_owned())
            });
            if let Some(addr) = addr {
                let scheme = if tls { "https" } else { "http" };
                return Server { child, output, base_url: format!("{scheme}://{addr}"), data_dir, owns_data_dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("palisade exited with {status}: {:?}", output.lock().unwrap());
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "palisade did not start: {:?}",
                output.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Signs up, confirms the address from this server's outbox, signs in: the bearer token.
    pub async fn verified_user(&self, email: &str) -> String {
        let body = json!({"email": email, "password": PASSWORD, "name": "Test"});
        assert_eq!(call(&self.base_url, "POST", "/api/v1/auth/signup", None, Some(body)).await.0, 202);
        let outbox = palisade_mail::Outbox::open(self.data_dir.join("outbox")).unwrap();
        let mut token = None;
        for _ in 0..200 {
            token = outbox
                .list()
                .unwrap()
                .iter()
                .rev()
                .find(|m| m.to.contains(email))
                .and_then(|m| palisade_testkit::link_token(&outbox.read(m).unwrap(), "/verify-email"));
            if token.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = token.expect("verification mail in the outbox");
        let (status, _) =
            call(&self.base_url, "POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token}))).await;
        assert_eq!(status, 204);
        let (status, login) = call(
            &self.base_url,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
        assert_eq!(status, 200, "{login}");
        login["access_token"].as_str().unwrap().to_owned()
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_data_dir {
            palisade_testkit::remove_data_dir(&self.data_dir);
        }
    }
}

pub async fn call(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
