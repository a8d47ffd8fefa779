//! A real headless Chromium, driven through chromedriver (WebDriver), for the console's end-to-end tests.
//!
//! Each `Browser` has its own chromedriver on a free loopback port, its own throwaway profile, and
//! its own screenshot folder, `target/console-screenshots/<artifact_name>/`, so tests can run in
//! parallel and a person can page through what each one saw.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL: &str = "run scripts/ensure-deps.sh test (it installs the chromium and chromium-driver packages)";
/// How long an element may take to appear, or a submitted form to load, before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// chromedriver answers within a second or two; the margin is for a machine busy compiling.
const DRIVER_START: Duration = Duration::from_secs(20);

/// A headless Chromium with one WebDriver session. Dropping it stops chromedriver and Chromium
/// even if the test panicked; [`Browser::close`] ends the session politely first.
pub struct Browser {
    client: Client,
    shots: PathBuf,
    shot_count: AtomicU32,
    // Declared last so it is dropped after the session handle above.
    _driver: Driver,
}

/// chromedriver, the process group it leads (Chromium is in it), and the directory holding the
/// profile and chromedriver's log.
struct Driver {
    child: Child,
    dir: tempfile::TempDir,
}

impl Driver {
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        format!("chromedriver log:\n{log}")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A session that was never closed (a failed test) leaves Chromium running, and Chromium
        // does not die with chromedriver; both are in the group chromedriver leads, so end the group.
        // `id()` is None once chromedriver has been reaped, when its pid (the group id) could be reused.
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: kill(2) takes no pointers; a negative pid names the process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        // Reap it before the profile directory is removed (the TempDir, dropped after this).
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. `artifact_name` names this test's screenshot
    /// folder, which is emptied here, so it should be unique to the test.
    pub async fn start(artifact_name: &str) -> Browser {
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} not found: {INSTALL}");
        let dir = tempfile::Builder::new().prefix("palisade-browser-").tempdir().expect("browser temp dir");
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("chromedriver log file");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("chromedriver log file"))
            .stderr(log)
            // Its own process group, so Drop can end Chromium with it (see Driver's Drop).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => panic!("chromedriver not found: {INSTALL}"),
                _ => panic!("start chromedriver: {e}"),
            });
        // Owned at once, so the process is stopped on every path below, the panics included.
        let mut driver = Driver { child, dir };
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_ready(&mut driver, &webdriver).await;

        let profile = driver.dir.path().join("profile");
        let args = [
            "--headless=new",
            "--no-sandbox", // we run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            // No update checks, sync or other calls home: tests see only the server under test.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage", // containers often have a tiny /dev/shm
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let Value::Object(caps) = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }) else {
            unreachable!("a JSON object literal")
        };
        // Plain HTTP: chromedriver listens on loopback only.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("open a WebDriver session with {CHROMIUM}: {e}\n{}", driver.log()));

        let shots = target_dir().join("console-screenshots").join(artifact_name);
        // A rerun replaces the last run's pictures rather than interleaving with them.
        let _ = std::fs::remove_dir_all(&shots);
        Browser { client, shots, shot_count: AtomicU32::new(0), _driver: driver }
    }

    /// The WebDriver client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) {
        self.ok(self.client.goto(url).await, || format!("goto {url}")).await;
        self.settle(&format!("goto {url}")).await;
    }

    /// Waits until the current document has loaded and has a body: chromedriver can answer a
    /// navigation while the new document is still being committed, and reading the page then
    /// gives an empty source (seen on a busy machine).
    async fn settle(&self, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let state = self.client.execute("return document.readyState + '|' + !!document.body", vec![]).await;
            if matches!(&state, Ok(Value::String(s)) if s == "complete|true") {
                return;
            }
            if Instant::now() > deadline {
                return self.fail(format!("{what}: the page did not finish loading in {WAIT:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Saves the page as `target/console-screenshots/<artifact_name>/<NN>-<name>.png`, numbered
    /// so the files sort in the order they were taken. Returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.ok(self.client.screenshot().await, || format!("screenshot {name}")).await;
        self.save_png(name, &png)
    }

    /// Types `text` into the field at `selector`, replacing what it held.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.wait_for(selector).await;
        self.ok(field.clear().await, || format!("clear {selector:?}")).await;
        self.ok(field.send_keys(text).await, || format!("type into {selector:?}")).await;
    }

    pub async fn click(&self, selector: &str) {
        let element = self.wait_for(selector).await;
        self.ok(element.click().await, || format!("click {selector:?}")).await;
    }

    /// The rendered text of the element at `selector`.
    pub async fn text(&self, selector: &str) -> String {
        let element = self.wait_for(selector).await;
        self.ok(element.text().await, || format!("read the text of {selector:?}")).await
    }

    /// Clicks a form's submit button and waits until the page it leads to has loaded.
    pub async fn submit_form(&self, button_selector: &str) {
        // The new page is there once the old page's root element has gone stale. Comparing URLs
        // would not do: a form usually posts back to its own address.
        let old_root = self.ok(self.client.find(Locator::Css("html")).await, || "find <html>".into()).await;
        self.click(button_selector).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let replaced = match old_root.tag_name().await {
                Ok(_) => false,
                // Chromium sometimes reports the old page's element as an inspector error rather
                // than a stale reference; either way that document is gone.
                Err(e)
                    if e.is_stale_element_reference()
                        || e.is_no_such_element()
                        || e.to_string().contains("does not belong to the document") =>
                {
                    true
                }
                Err(e) => self.ok(Err(e), || format!("submit with {button_selector:?}")).await,
            };
            let state = self.client.execute("return document.readyState", vec![]).await;
            if replaced && matches!(state, Ok(Value::String(s)) if s == "complete") {
                return;
            }
            if Instant::now() > deadline {
                return self.fail(format!("submit with {button_selector:?}: no new page after {WAIT:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The path of the current URL (no query or fragment).
    pub async fn current_path(&self) -> String {
        self.ok(self.client.current_url().await, || "read the current URL".into()).await.path().to_string()
    }

    pub async fn page_source(&self) -> String {
        self.settle("read the page source").await;
        self.ok(self.client.source().await, || "read the page source".into()).await
    }

    /// The element at `selector`, once it exists (at most 10 s).
    pub async fn wait_for(&self, selector: &str) -> Element {
        let found = self.client.wait().at_most(WAIT).for_element(Locator::Css(selector)).await;
        self.ok(found, || format!("find {selector:?} within {WAIT:?}")).await
    }

    /// Gives the browser a virtual security key (CTAP2 over USB, resident keys, user verification
    /// that always succeeds) through WebDriver's WebAuthn extension, so WebAuthn ceremonies run
    /// for real in Chromium without hardware.
    pub async fn add_virtual_authenticator(&self) {
        self.client
            .issue_cmd(AddVirtualAuthenticator)
            .await
            .unwrap_or_else(|err| panic!("virtual authenticator: {err}"));
    }

    /// Resizes the page's viewport (not the window), e.g. to 390×844 for a phone-sized screenshot.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        // WebDriver sizes the outer window; headless Chromium's window is slightly larger than
        // the viewport, so measure the difference and resize once more to make up for it.
        let what = || format!("set the viewport to {width}x{height}");
        self.ok(self.client.set_window_size(width, height).await, what).await;
        let inner = self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await;
        let inner = self.ok(inner, what).await;
        let grow = |want: u32, have: u64| (2 * u64::from(want)).saturating_sub(have).try_into().unwrap_or(want);
        if let (Some(w), Some(h)) = (inner[0].as_u64(), inner[1].as_u64())
            && (w, h) != (u64::from(width), u64::from(height))
        {
            self.ok(self.client.set_window_size(grow(width, w), grow(height, h)).await, what).await;
        }
    }

    /// Ends the WebDriver session (Chromium exits), then stops chromedriver.
    pub async fn close(self) {
        // An error here needs no report: dropping `self` next kills whatever is left of chromedriver
        // and Chromium, then removes the profile.
        let _ = self.client.clone().close().await;
    }

    fn save_png(&self, name: &str, png: &[u8]) -> PathBuf {
        let n = self.shot_count.fetch_add(1, Ordering::SeqCst) + 1;
        std::fs::create_dir_all(&self.shots).expect("screenshot directory");
        let path = self.shots.join(format!("{n:02}-{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Unwraps a WebDriver result; on failure the test panics saying what was tried and where.
    async fn ok<T>(&self, result: Result<T, CmdError>, what: impl FnOnce() -> String) -> T {
        match result {
            Ok(value) => value,
            Err(e) => self.fail(format!("{}: {e}", what())).await,
        }
    }

    /// Panics with `message`, the current URL and, if one can still be taken, a screenshot.
    async fn fail<T>(&self, message: String) -> T {
        let url = self.client.current_url().await.map_or_else(|e| format!("<unknown: {e}>"), |u| u.to_string());
        let shot = match self.client.screenshot().await {
            Ok(png) => format!("; screenshot: {}", self.save_png("failure", &png).display()),
            Err(_) => String::new(),
        };
        panic!("browser: {message} (at {url}{shot})")
    }
}

/// Polls chromedriver's `/status` until it says it is ready; panics with its log if it does not.
async fn wait_ready(driver: &mut Driver, webdriver: &str) {
    // No proxy: a proxy from the environment would not reach our loopback.
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(format!("{webdriver}/status")).send().await
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        if let Ok(Some(exit)) = driver.child.try_wait() {
            panic!("chromedriver exited ({exit}) before it was ready\n{}", driver.log());
        }
        assert!(started.elapsed() < DRIVER_START, "chromedriver not ready after {DRIVER_START:?}\n{}", driver.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The workspace's target directory: `CARGO_TARGET_DIR` if set (a relative one is taken from the
/// workspace root, where cargo is usually run), else `target` beside `Cargo.lock`.
fn target_dir() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or(PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(&manifest).to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `POST /session/{id}/webauthn/authenticator` (WebAuthn Level 2, §11.3), which fantoccini has
/// no method for.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/webauthn/authenticator", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "usb",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}
