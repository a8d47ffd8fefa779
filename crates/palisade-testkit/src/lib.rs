//! Test kit: the real server on a random port over a fresh database, for tests that speak HTTP.
//!
//! One embedded PostgreSQL cluster per test process (started by the same code as `palisade
//! serve`), one migrated template database, and a fresh database cloned from it per test.

mod browser;
mod cluster;
mod redis;
mod scratch;
mod smtp;
mod softhsm;

use std::net::SocketAddr;
use std::sync::Arc;

use palisade_api::ApiState;
use palisade_core::{ManualClock, SystemRandomness};
use palisade_server::config::{Config, RateLimits};
use palisade_store::Db;
use serde_json::{Value, json};

pub use browser::Browser;
pub use cluster::{TestDb, data_dir, fresh_database};
pub use redis::RedisServer;
pub use scratch::{remove_data_dir, remove_stale};
pub use smtp::SmtpSink;
pub use softhsm::SoftHsm;

/// A password every test account uses: long and not guessable by zxcvbn.
pub const PASSWORD: &str = "violet-kettle-orbit-93";

/// A running server over its own database.
pub struct TestApp {
    pub base_url: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
    /// The server's password hasher, to count real verifications.
    pub hasher: palisade_auth::PasswordHasher,
    /// Where this server's mail goes.
    pub outbox: palisade_mail::Outbox,
    /// The server's use-case layer, for driving background work (the audit sequencer) by hand.
    pub app: palisade_app::App,
    /// The instance key this server seals with; another process serving the same database
    /// needs it too (`PALISADE_INSTANCE_KEY_FILE`).
    pub instance_key_file: std::path::PathBuf,
}

impl TestApp {
    /// The settings another process serving this database needs to open what this server
    /// sealed: the instance key and the local key provider's KEK and key store.
    pub fn key_envs(&self) -> Vec<(&'static str, String)> {
        let dir = self.instance_key_file.parent().expect("data dir");
        vec![
            ("PALISADE_INSTANCE_KEY_FILE", self.instance_key_file.display().to_string()),
            ("PALISADE_KEK_FILE", dir.join("kek.key").display().to_string()),
            ("PALISADE_KEY_STORE_FILE", dir.join("keystore.json").display().to_string()),
        ]
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of this status and `type`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "content type; body: {}", self.text);
        assert_eq!(self.body["type"], format!("/problems/{slug}"), "problem type; body: {}", self.text);
        assert_eq!(self.body["status"], status, "problem status member");
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "detail present");
    }
}

impl TestApp {
    /// What most tests run with: two hash workers, rate limits off.
    fn default_config() -> Config {
        Config { hash_workers: Some(2), rate_limits: RateLimits::off(), ..Config::default() }
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(Self::default_config()).await
    }

    /// A server with a configuration of the test's choosing.
    pub async fn spawn_with(config: Config) -> Self {
        Self::spawn_on(config, false, false).await
    }

    /// A server whose request connections run every statement's generic plan from its first
    /// execution: the plan a long-lived pooled connection settles on after five, estimated for
    /// no organization in particular (whatever the statistics say about the one being read).
    pub async fn spawn_with_generic_plans() -> Self {
        Self::spawn_on(Self::default_config(), false, true).await
    }

    /// A server for a real browser: addressed as `http://localhost:<port>` (a secure context
    /// whose host can be a WebAuthn relying party, which an IP address cannot), with WebAuthn
    /// expecting exactly that origin.
    pub async fn spawn_for_browser() -> Self {
        Self::spawn_on(Self::default_config(), true, false).await
    }

    async fn spawn_on(mut config: Config, browser: bool, generic_plans: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base_url = if browser { format!("http://localhost:{}", addr.port()) } else { format!("http://{addr}") };
        if browser {
            config.webauthn_origin = Some(base_url.clone());
        }
        let db = fresh_database().await;
        // A data directory of its own: the outbox lives there.
        config.data_dir = cluster::data_dir().join("apps").join(&db.name);
        // The kit serves plain HTTP (TLS is tested against the binary), so URLs are http.
        config.insecure_http = true;
        let mut runtime_config = db.runtime_config();
        if generic_plans {
            runtime_config.options("-c plan_cache_mode=force_generic_plan");
        }
        let pool = Db::connect(runtime_config, 8).expect("pool");
        palisade_server::serve::refuse_unsafe_role(&pool).await.expect("runtime role is safe");
        let clock = Arc::new(ManualClock::ticking(time::OffsetDateTime::now_utc(), time::Duration::milliseconds(1)));
        let mut app = palisade_server::serve::build_app(&config, pool, clock.clone(), Arc::new(SystemRandomness))
            .expect("build app");
        // The key jobs' own login, as `palisade serve` connects it.
        let key_jobs = Db::connect(db.keys_config(), 2).expect("key jobs pool");
        palisade_server::serve::refuse_unsafe_role(&key_jobs).await.expect("key jobs' role is safe");
        app.key_jobs = Some(key_jobs);
        // The sign-in login, likewise: only it may open sessions (0036).
        let sign_in = Db::connect(db.signin_config(), 4).expect("sign-in pool");
        palisade_server::serve::refuse_unsafe_role(&sign_in).await.expect("sign-in role is safe");
        app.sign_in = Some(sign_in);
        app.load_bearer_key().await.expect("bearer key");
        app.reload_token_keys().await.expect("token signing keys");
        let outbox = palisade_mail::Outbox::open(config.outbox_dir()).expect("outbox");
        let hasher = app.hasher.clone();
        let handle = app.clone();
        let limiter = palisade_server::serve::limiter(&config).expect("rate limits");
        let trusted_proxies = palisade_server::serve::trusted_proxies(&config).expect("trusted proxies");
        let state = ApiState::new(palisade_api::ApiShared {
            app,
            secure_cookies: false,
            limiter,
            trusted_proxies,
            max_concurrent_requests: config.max_concurrent_requests,
            request_timeout: std::time::Duration::from_secs(config.request_timeout_secs.max(1)),
            export_stall: std::time::Duration::from_secs(config.audit_export_stall_seconds.max(1)),
        });
        let router = palisade_api::router_with(state.clone(), palisade_web::console(state));
        // The same serving loop as `palisade serve` (header limits, slow-client timeout), over
        // plain HTTP: TLS itself is tested against the binary.
        let header_read_timeout = std::time::Duration::from_secs(config.header_read_timeout_secs.max(1));
        tokio::spawn(palisade_server::listener::serve(
            listener,
            router,
            None,
            header_read_timeout,
            std::future::pending(),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("palisade-testkit")
            .build()
            .expect("client");
        let instance_key_file = config.data_dir.join("instance.key");
        Self { base_url, addr, http, clock, db, hasher, outbox, app: handle, instance_key_file }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Sends a request with extra headers (e.g. If-Match), an optional bearer token and JSON body.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Sends a raw body with a given content type.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path)).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send("GET", path, token, None).await
    }

    pub async fn signup(&self, email: &str, name: &str) -> Answer {
        self.send(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": email, "password": PASSWORD, "name": name})),
        )
        .await
    }

    /// Signs in and returns the bearer token.
    pub async fn login(&self, email: &str) -> String {
        let answer =
            self.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
        assert_eq!(answer.status, 200, "login: {}", answer.text);
        answer.body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// What the server proves to the database for a bearer access token: its session (the
    /// token is verified as the API would).
    pub fn session_proof(&self, access_token: &str) -> palisade_core::SessionProof {
        let now = self.app.clock.now().unix_timestamp();
        let access = self.app.tokens.verify(access_token, now).expect("a valid access token");
        self.app.access_proof(access.session).expect("the bearer key is loaded")
    }

    /// Signs in and returns the browser's `Cookie` header value (session and CSRF cookies).
    pub async fn login_cookie(&self, email: &str) -> String {
        let answer =
            self.send("POST", "/api/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
        assert_eq!(answer.status, 200, "login: {}", answer.text);
        answer
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A new account with a verified address, signed in.
    pub async fn user(&self, email: &str) -> String {
        assert_eq!(self.signup(email, "Test Person").await.status, 202);
        let mail = self.wait_for_mail(email, "Confirm your email address").await;
        let token = link_token(&mail, "/verify-email").expect("verification link");
        let verified = self.send("POST", "/api/v1/auth/verify-email", None, Some(json!({"token": token}))).await;
        assert_eq!(verified.status, 204, "verify: {}", verified.text);
        self.login(email).await
    }

    /// Every message sent to `to` so far, whole (headers and body), oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        self.outbox
            .list()
            .expect("outbox")
            .into_iter()
            .filter(|m| m.to.contains(to))
            .map(|m| self.outbox.read(&m).expect("read mail"))
            .collect()
    }

    /// Waits (up to 10 s) until at least `n` messages to `to` about `subject` exist; returns the
    /// n-th (oldest first). For flows that send the same kind of message twice.
    pub async fn wait_for_nth_mail(&self, to: &str, subject: &str, n: usize) -> String {
        for _ in 0..200 {
            let found: Vec<_> = self
                .outbox
                .list()
                .expect("outbox")
                .into_iter()
                .filter(|m| m.to.contains(to) && m.subject.contains(subject))
                .collect();
            if found.len() >= n {
                return self.outbox.read(&found[n - 1]).expect("read mail");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} mails to {to} about {subject:?}");
    }

    /// Waits (up to 10 s; mail is sent in the background) for a message to `to` whose subject
    /// contains `subject`, and returns the newest such message.
    pub async fn wait_for_mail(&self, to: &str, subject: &str) -> String {
        for _ in 0..200 {
            let found = self
                .outbox
                .list()
                .expect("outbox")
                .into_iter()
                .rev()
                .find(|m| m.to.contains(to) && m.subject.contains(subject));
            if let Some(mail) = found {
                return self.outbox.read(&mail).expect("read mail");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no mail to {to} about {subject:?}; outbox: {:?}", self.outbox.list().unwrap_or_default());
    }

    /// A new account that owns a new organization: (token, org id).
    pub async fn owner_of(&self, email: &str, org_name: &str) -> (String, String) {
        let token = self.user(email).await;
        let answer = self.send("POST", "/api/v1/orgs", Some(&token), Some(json!({"name": org_name}))).await;
        assert_eq!(answer.status, 201, "create org: {}", answer.text);
        (token, answer.body["id"].as_str().expect("org id").to_owned())
    }

    /// A superuser connection to this test's database, for assertions and for breaking things.
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.db.admin().await
    }

    /// A connection as the runtime role, as the server uses.
    pub async fn runtime(&self) -> tokio_postgres::Client {
        self.db.runtime().await
    }

    /// A connection as the key jobs' login (`palisade_app_keys`).
    pub async fn key_jobs(&self) -> tokio_postgres::Client {
        palisade_server::database::connect(&self.db.keys_config()).await.expect("key jobs connection")
    }

    /// Row count of a palisade table, seen by the superuser (row-level security does not apply).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM palisade.\"{table}\"");
        self.admin().await.query_one(&sql, &[]).await.expect("count").get(0)
    }

    /// Row counts of every palisade table, and a digest of the whole content of every tenant
    /// table, for "nothing was written" assertions. (Instance tables are counted only: serving
    /// any request moves a session's last-seen time.)
    pub async fn snapshot(&self) -> Vec<(String, i64, String)> {
        let admin = self.admin().await;
        let tables = admin
            .query(
                "SELECT c.relname::text, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                        AND a.attname = 'tenant_id' AND NOT a.attisdropped)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'palisade' AND c.relkind = 'r' ORDER BY 1",
                &[],
            )
            .await
            .expect("tables");
        let mut counts = Vec::new();
        for row in tables {
            let (name, tenant): (String, bool) = (row.get(0), row.get(1));
            let sql = if tenant {
                format!(
                    "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM palisade.\"{name}\" t"
                )
            } else {
                format!("SELECT count(*), '' FROM palisade.\"{name}\"")
            };
            let row = admin.query_one(&sql, &[]).await.expect("count");
            counts.push((name, row.get(0), row.get(1)));
        }
        counts
    }
}

/// The token of a link such as `<public-url>/verify-email?token=…` in a message.
pub fn link_token(mail: &str, path: &str) -> Option<String> {
    let marker = format!("{path}?token=");
    let start = mail.find(&marker)? + marker.len();
    Some(mail[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect())
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

/// The header and claims of a JWT, decoded without checking anything (for assertions).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine;
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url part");
        serde_json::from_slice(&bytes).expect("JSON part")
    };
    let mut parts = token.split('.');
    let header = decode(parts.next().expect("header"));
    let claims = decode(parts.next().expect("claims"));
    (header, claims)
}
