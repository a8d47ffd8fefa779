//! Configuration: defaults, then a TOML file, then `PALISADE_*` environment variables, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `PALISADE_RATE_LIMITS=on|off`: off is for tests and benchmarks that are not about limits.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

/// A PIN written as text or as a number in the config file, never quoted in an error.
fn pin_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Pin {
        Text(String),
        Number(u64),
    }
    match Option::<Pin>::deserialize(deserializer) {
        Ok(pin) => Ok(pin.map(|p| match p {
            Pin::Text(text) => SecretString::from(text),
            Pin::Number(n) => SecretString::from(n.to_string()),
        })),
        Err(_) => Err(serde::de::Error::custom("pkcs11_pin must be text (the token's user PIN)")),
    }
}

/// Where wrapping keys live.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyProviderKind {
    Local,
    Pkcs11,
}

/// `[rate_limits]`: requests per minute by kind of caller (GCRA, the whole budget as burst).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// `on` (default) or `off`; `PALISADE_RATE_LIMITS=on|off` overrides it. Off is for tests and
    /// benchmarks that are not about limits; the server warns at start.
    pub mode: Switch,
    /// Callers without a valid credential, per client address.
    pub anonymous: u32,
    /// Members and API keys of organizations on each plan, per user (or key) and organization.
    pub standard: u32,
    pub professional: u32,
    pub enterprise: u32,
    /// Sign-in, sign-up, password reset, MFA and step-up routes, per client address.
    pub auth: u32,
    /// When Redis is unreachable: `local` (each node counts alone), `open` or `closed` (503).
    pub on_redis_failure: palisade_api::rate_limit::RedisFailure,
}

impl Default for RateLimits {
    fn default() -> Self {
        let budgets = palisade_api::rate_limit::Budgets::default();
        Self {
            mode: Switch::On,
            anonymous: budgets.anonymous,
            standard: budgets.standard,
            professional: budgets.professional,
            enterprise: budgets.enterprise,
            auth: budgets.auth,
            on_redis_failure: palisade_api::rate_limit::RedisFailure::Local,
        }
    }
}

impl RateLimits {
    pub fn budgets(&self) -> palisade_api::rate_limit::Budgets {
        palisade_api::rate_limit::Budgets {
            anonymous: self.anonymous,
            standard: self.standard,
            professional: self.professional,
            enterprise: self.enterprise,
            auth: self.auth,
        }
    }

    /// Switched off (for tests and benchmarks that are not about limits).
    pub fn off() -> Self {
        Self { mode: Switch::Off, ..Self::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// The URL people use to reach this server (links in emails, cookie security). Defaults to
    /// `http://<listen>`.
    pub public_url: Option<String>,
    /// Runtime connection (the unprivileged role). Unset: use the embedded PostgreSQL.
    pub database_url: Option<SecretString>,
    /// Owner/superuser connection for `palisade migrate`.
    pub database_admin_url: Option<SecretString>,
    /// The `<runtime_role>_keys` login's connection (external database): key rotation and
    /// shredding run over it, never over the runtime role's. Without it `serve` runs no key jobs.
    pub database_keys_url: Option<SecretString>,
    /// The `<runtime_role>_signin` login's connection (external database): the transactions that
    /// open a session run over it, never over the runtime role's. `serve` needs it.
    pub database_signin_url: Option<SecretString>,
    /// PEM file of the certificate authority that signed the database server's certificate.
    /// Connections to another machine use TLS and verify the server's certificate and name
    /// (`palisade_store::tls`); unset, the certificate must chain to one of Mozilla's roots.
    pub database_ca_file: Option<PathBuf>,
    /// Name of the runtime login role `migrate` creates.
    pub runtime_role: String,
    pub db_pool_size: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    pub session_lifetime_minutes: i64,
    pub session_idle_minutes: i64,
    /// Lifetime of an access token (a signed JWT), in minutes.
    pub access_token_minutes: i64,
    /// Absolute lifetime of a refresh-token family, in days.
    pub refresh_lifetime_days: i64,
    /// The access-token signing key is replaced this often (days); `palisade keys rotate-signing`
    /// does it at once.
    pub signing_key_rotation_days: i64,
    /// WebAuthn relying-party id: the site's domain (or a parent of it). WebAuthn refuses IP
    /// addresses, hence `localhost` by default.
    pub webauthn_rp_id: String,
    /// The origin browsers sign WebAuthn ceremonies for; default: `public_url`, or
    /// `http://localhost:<port>` when that names a loopback address.
    pub webauthn_origin: Option<String>,
    /// Threads running requests (the async runtime's workers). Default: half the CPU cores (at
    /// least one) when the database runs on this machine (embedded, or reached over a Unix
    /// socket or loopback), else every core.
    pub worker_threads: Option<usize>,
    /// Threads hashing passwords at once; default: the number of CPU cores.
    pub hash_workers: Option<usize>,
    /// Sign-ins allowed to queue for a hashing thread before new ones get 503.
    pub hash_queue: usize,
    /// Extra `name=value` settings for the embedded PostgreSQL.
    pub embedded_postgres_settings: Vec<String>,
    /// Consecutive failed sign-ins (password or second factor) that lock an account.
    pub lockout_threshold: i32,
    /// How long a locked account stays locked; it unlocks by itself afterwards.
    pub lockout_minutes: i64,
    /// Request budgets per minute (`[rate_limits]`); never the account lockout.
    pub rate_limits: RateLimits,
    /// Redis shared by every node for rate limits (`redis://host:6379`); unset: in process.
    pub redis_url: Option<SecretString>,
    /// With a `rediss://` `redis_url`: trust only the CAs in this PEM file (unset: the system's).
    pub redis_ca_file: Option<PathBuf>,
    /// Proxies (addresses or CIDR networks) whose `Forwarded` / `X-Forwarded-For` headers are
    /// believed; from anyone else the socket address is the client.
    pub trusted_proxies: Vec<String>,
    /// SMTP server for transactional mail (`smtps://user:pass@host:465` or
    /// `smtp://host:587?tls=required`). Unset: mail goes to `<data_dir>/outbox/`.
    pub smtp_url: Option<SecretString>,
    /// Sender of transactional mail.
    pub mail_from: String,
    /// The instance key file; default `<data_dir>/instance.key`.
    pub instance_key_file: Option<PathBuf>,
    /// Where wrapping keys live (`local` or `pkcs11`); see `key_provider.rs`.
    pub key_provider: KeyProviderKind,
    /// `local`: the key-encryption key (256 bits, mode 0600); default `<data_dir>/kek.key`,
    /// created at first start. Point it at a mounted secret in containers.
    pub kek_file: Option<PathBuf>,
    /// `local`: the wrapping keys sealed under the KEK; default `<data_dir>/keystore.json`. Every
    /// node of one installation needs the same files (a shared volume), or use `pkcs11`.
    pub key_store_file: Option<PathBuf>,
    /// `pkcs11`: the module (e.g. `/usr/lib/softhsm/libsofthsm2.so`), token label and user PIN
    /// (`PALISADE_PKCS11_PIN`).
    pub pkcs11_module: Option<PathBuf>,
    pub pkcs11_token_label: String,
    #[serde(deserialize_with = "pin_text")]
    pub pkcs11_pin: Option<SecretString>,
    /// Each organization's data key is replaced (and its values re-encrypted) this often.
    pub data_key_rotation_days: i64,
    /// Seconds an unwrapped data key stays in a node's memory before the provider is asked again.
    pub data_key_cache_seconds: i64,
    /// Days a scheduled organization deletion can be cancelled before its keys are destroyed
    /// (at least 1; the database enforces the floor too).
    pub org_deletion_grace_days: i64,
    /// Days the audit events of no organization (sign-ups, sign-ins, lockouts: the instance
    /// chain) are kept before they are purged under a signed truncation: 365 to 36500. Unset:
    /// whatever the database holds (730 until an operator sets it); set, it is written to the
    /// database by `palisade migrate` (and an embedded server's start), and a server never
    /// purges instance events younger than it.
    pub instance_audit_retention_days: Option<i64>,
    /// The most collections one organization may hold.
    pub collections_per_org: i32,
    /// The most records one organization may hold.
    pub records_per_org: i64,
    /// The most bytes of record data one organization may hold (stored size).
    pub record_bytes_per_org: i64,
    /// How often the audit sequencer seals new events into their chains (milliseconds); an
    /// event is chained within about this long after its transaction commits.
    pub audit_seal_interval_ms: u64,
    /// An audit export whose client takes nothing for this long (seconds) is stopped: its
    /// snapshot is an open transaction, which holds back vacuum and a pooled connection.
    pub audit_export_stall_seconds: u64,
    /// The `<env>` of API keys minted here (`pal_<env>_…`), e.g. `live`, `test`, `staging`: a
    /// leaked key tells which installation it came from.
    pub api_key_env: String,
    /// PEM certificate chain and private key to serve HTTPS with; reloaded when they change.
    /// Unset: a self-signed certificate for localhost in `<data_dir>/tls/`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Plain HTTP instead of HTTPS (`--insecure-http`): only behind a TLS-terminating proxy.
    pub insecure_http: bool,
    /// Requests in flight at once on this node; past it, 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Seconds a client has to send a request's headers (slow clients are disconnected).
    pub header_read_timeout_secs: u64,
    /// Seconds a whole request may take, its body included (then 408).
    pub request_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./palisade-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: None,
            database_admin_url: None,
            database_keys_url: None,
            database_signin_url: None,
            database_ca_file: None,
            runtime_role: "palisade_app".into(),
            db_pool_size: 16,
            log_format: LogFormat::Json,
            log_level: "info".into(),
            session_lifetime_minutes: 12 * 60,
            session_idle_minutes: 30,
            access_token_minutes: 15,
            refresh_lifetime_days: 30,
            signing_key_rotation_days: 30,
            webauthn_rp_id: "localhost".into(),
            webauthn_origin: None,
            worker_threads: None,
            hash_workers: None,
            hash_queue: 256,
            embedded_postgres_settings: Vec::new(),
            lockout_threshold: 6,
            lockout_minutes: 15,
            rate_limits: RateLimits::default(),
            redis_url: None,
            redis_ca_file: None,
            trusted_proxies: Vec::new(),
            smtp_url: None,
            mail_from: "Palisade <no-reply@localhost>".into(),
            instance_key_file: None,
            key_provider: KeyProviderKind::Local,
            kek_file: None,
            key_store_file: None,
            pkcs11_module: None,
            pkcs11_token_label: "palisade".into(),
            pkcs11_pin: None,
            data_key_rotation_days: 365,
            data_key_cache_seconds: 300,
            org_deletion_grace_days: 7,
            instance_audit_retention_days: None,
            collections_per_org: 100,
            records_per_org: 1_000_000,
            record_bytes_per_org: 1 << 30,
            audit_seal_interval_ms: 250,
            audit_export_stall_seconds: 60,
            api_key_env: "live".into(),
            tls_cert_file: None,
            tls_key_file: None,
            insecure_http: false,
            max_concurrent_requests: 512,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
        }
    }
}

/// Environment variables under the PALISADE_ prefix that are not config keys.
/// (`rate_limits` is the `[rate_limits]` table; `PALISADE_RATE_LIMITS=on|off` sets its `mode`.)
/// (`pkcs11_pin` is read as text by hand: a numeric PIN would otherwise be parsed as a number
/// and quoted back in figment's type error.)
const NON_CONFIG_ENV: &[&str] = &["config", "pg_bin_dir", "rate_limits", "pkcs11_pin"];

/// Flags given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `--insecure-http`.
    pub insecure_http: bool,
}

impl Config {
    pub fn load(overrides: &Overrides) -> Result<Self> {
        let file = overrides
            .config_file
            .clone()
            .or_else(|| std::env::var_os("PALISADE_CONFIG").map(PathBuf::from))
            .or_else(|| Path::new("palisade.toml").exists().then(|| PathBuf::from("palisade.toml")));
        let mut figment = Figment::new();
        if let Some(file) = &file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            figment = figment.merge(Toml::file(file));
        }
        // `__` reaches into tables: PALISADE_RATE_LIMITS__STANDARD=200.
        figment = figment.merge(Env::prefixed("PALISADE_").ignore(NON_CONFIG_ENV).split("__"));
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen.to_string()));
        }
        if overrides.insecure_http {
            figment = figment.merge(Serialized::default("insecure_http", true));
        }
        let mut config: Config = figment.extract().context("invalid configuration (see `palisade config check`)")?;
        if let Ok(pin) = std::env::var("PALISADE_PKCS11_PIN") {
            config.pkcs11_pin = Some(SecretString::from(pin));
        }
        if let Some(value) = std::env::var_os("PALISADE_RATE_LIMITS") {
            config.rate_limits.mode = match value.to_str() {
                Some("on") => Switch::On,
                Some("off") => Switch::Off,
                _ => anyhow::bail!("PALISADE_RATE_LIMITS must be on or off, not {value:?}"),
            };
        }
        if let Some(days) = config.instance_audit_retention_days {
            anyhow::ensure!(
                (365..=36_500).contains(&days),
                "instance_audit_retention_days must be between 365 and 36500 days, not {days} \
                 (PALISADE_INSTANCE_AUDIT_RETENTION_DAYS or palisade.toml)"
            );
        }
        Ok(config)
    }

    pub fn public_url(&self) -> String {
        let scheme = if self.insecure_http { "http" } else { "https" };
        self.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    /// The certificate to serve, or `None` for plain HTTP. Both files or neither.
    pub fn certificate_files(&self) -> Result<Option<crate::tls::CertificateFiles>> {
        if self.insecure_http {
            return Ok(None);
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                Ok(Some(crate::tls::CertificateFiles { cert: cert.clone(), key: key.clone(), self_signed: false }))
            }
            (None, None) => crate::tls::ensure_self_signed(&self.data_dir.join("tls")).map(Some),
            _ => anyhow::bail!("set both tls_cert_file and tls_key_file (or neither, for a self-signed certificate)"),
        }
    }

    /// The WebAuthn origin (see `webauthn_origin`).
    pub fn webauthn_origin(&self) -> String {
        if let Some(origin) = &self.webauthn_origin {
            return origin.clone();
        }
        let public = self.public_url();
        let scheme = if public.starts_with("https://") { "https" } else { "http" };
        let loopback = ["127.0.0.1:", "[::1]:", "localhost:"];
        let rest = public.split_once("://").map_or(public.as_str(), |(_, rest)| rest);
        match loopback.iter().find_map(|prefix| rest.strip_prefix(prefix)) {
            Some(port) => format!("{scheme}://localhost:{}", port.trim_end_matches('/')),
            None => public,
        }
    }

    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
            && self.database_admin_url.is_none()
            && self.database_keys_url.is_none()
            && self.database_signin_url.is_none()
    }

    /// The effective configuration as text, secrets redacted.
    pub fn describe(&self) -> String {
        let url = |u: &Option<SecretString>| {
            u.as_ref().map(|s| redact_url(s.expose_secret())).unwrap_or_else(|| "(unset)".into())
        };
        [
            format!("data_dir = {:?}", self.data_dir.display().to_string()),
            format!("listen = \"{}\"", self.listen),
            format!("public_url = \"{}\"", self.public_url()),
            format!("database = \"{}\"", if self.is_embedded() { "embedded" } else { "external" }),
            format!("database_url = \"{}\"", url(&self.database_url)),
            format!("database_admin_url = \"{}\"", url(&self.database_admin_url)),
            format!("database_keys_url = \"{}\"", url(&self.database_keys_url)),
            format!("database_signin_url = \"{}\"", url(&self.database_signin_url)),
            format!(
                "database_ca_file = {}",
                self.database_ca_file.as_ref().map_or("(unset: Mozilla's roots)".into(), |p| format!("{:?}", p.display().to_string()))
            ),
            format!("runtime_role = \"{}\"", self.runtime_role),
            format!("db_pool_size = {}", self.db_pool_size),
            format!("log_format = \"{:?}\"", self.log_format).to_lowercase(),
            format!("log_level = \"{}\"", self.log_level),
            format!("session_lifetime_minutes = {}", self.session_lifetime_minutes),
            format!("access_token_minutes = {}", self.access_token_minutes),
            format!("refresh_lifetime_days = {}", self.refresh_lifetime_days),
            format!("signing_key_rotation_days = {}", self.signing_key_rotation_days),
            format!("webauthn_rp_id = {}", self.webauthn_rp_id),
            format!("webauthn_origin = {}", self.webauthn_origin()),
            format!("session_idle_minutes = {}", self.session_idle_minutes),
            format!("worker_threads = {}", self.worker_threads()),
            format!("hash_workers = {}", self.hash_workers()),
            format!("hash_queue = {}", self.hash_queue),
            format!("embedded_postgres_settings = {:?}", self.embedded_postgres_settings),
            format!("lockout_threshold = {}", self.lockout_threshold),
            format!("lockout_minutes = {}", self.lockout_minutes),
            format!(
                "rate_limits = {{ mode = \"{}\", anonymous = {}, standard = {}, professional = {}, enterprise = {}, auth = {}, on_redis_failure = \"{}\" }}",
                if self.rate_limits.mode == Switch::On { "on" } else { "off" },
                self.rate_limits.anonymous,
                self.rate_limits.standard,
                self.rate_limits.professional,
                self.rate_limits.enterprise,
                self.rate_limits.auth,
                self.rate_limits.on_redis_failure.as_str()
            ),
            format!("redis_url = \"{}\"", url(&self.redis_url)),
            format!(
                "redis_ca_file = {}",
                self.redis_ca_file.as_ref().map_or("(unset: the system's CAs)".into(), |p| format!("{:?}", p.display().to_string()))
            ),
            format!("trusted_proxies = {:?}", self.trusted_proxies),
            format!("insecure_http = {}", self.insecure_http),
            format!("max_concurrent_requests = {}", self.max_concurrent_requests),
            format!("header_read_timeout_secs = {}", self.header_read_timeout_secs),
            format!("request_timeout_secs = {}", self.request_timeout_secs),
            format!("tls_cert_file = {:?}", self.tls_cert_file.as_ref().map(|p| p.display().to_string())),
            format!("tls_key_file = {:?}", self.tls_key_file.as_ref().map(|p| p.display().to_string())),
            format!("key_provider = \"{}\"", if self.key_provider == KeyProviderKind::Local { "local" } else { "pkcs11" }),
            format!("kek_file = {:?}", self.kek_file().display().to_string()),
            format!("key_store_file = {:?}", self.key_store_file().display().to_string()),
            format!("pkcs11_module = {:?}", self.pkcs11_module.as_ref().map(|p| p.display().to_string())),
            format!("pkcs11_token_label = {:?}", self.pkcs11_token_label),
            format!("pkcs11_pin = \"{}\"", if self.pkcs11_pin.is_some() { "(set)" } else { "(unset)" }),
            format!("data_key_rotation_days = {}", self.data_key_rotation_days),
            format!("data_key_cache_seconds = {}", self.data_key_cache_seconds),
            format!("org_deletion_grace_days = {}", self.org_deletion_grace_days),
            match self.instance_audit_retention_days {
                Some(days) => format!("instance_audit_retention_days = {days}"),
                None => "# instance_audit_retention_days unset: the database's (730 unless set before)".into(),
            },
            format!("smtp_url = \"{}\"", url(&self.smtp_url)),
            format!("mail_from = {:?}", self.mail_from),
            format!("collections_per_org = {}", self.collections_per_org),
            format!("records_per_org = {}", self.records_per_org),
            format!("record_bytes_per_org = {}", self.record_bytes_per_org),
            format!("audit_seal_interval_ms = {}", self.audit_seal_interval_ms),
            format!("audit_export_stall_seconds = {}", self.audit_export_stall_seconds),
        ]
        .join("\n")
    }

    /// The instance key (AES-256: cursors, WebAuthn ceremony state, keyed hashes, and opening
    /// TOTP seeds and signing keys sealed before envelope encryption): a 0600 file, created at
    /// first start. Every node of one installation needs the same file.
    pub fn instance_key(&self) -> Result<palisade_crypto::InstanceKey> {
        let path = self.instance_key_file.clone().unwrap_or_else(|| self.data_dir.join("instance.key"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            if dir == self.data_dir {
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            }
        }
        Ok(palisade_crypto::InstanceKey::load_or_create(&path)?)
    }

    /// Where mail goes when no SMTP server is configured.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    /// The transactional mailer this configuration asks for.
    pub fn mailer(&self) -> Result<palisade_mail::Mailer> {
        Ok(match &self.smtp_url {
            Some(url) => palisade_mail::Mailer::smtp(url, &self.mail_from)?,
            None => palisade_mail::Mailer::outbox(self.outbox_dir(), &self.mail_from)?,
        })
    }

    /// With the database on the same cores, fewer request threads than cores: on 2 cores one
    /// worker served ~5 % more refresh rotations, record creates and reads than two, with less
    /// CPU per request (a busy worker parks and wakes less often; bench/README.md).
    pub fn worker_threads(&self) -> usize {
        let cores = cores();
        match self.worker_threads {
            Some(threads) => threads.max(1),
            None if self.database_is_local() => (cores / 2).max(1),
            None => cores,
        }
    }

    /// Whether the runtime database shares this machine: embedded, or every host of
    /// `database_url` a Unix socket or a loopback name. An unparsable URL counts as remote (the
    /// connection reports it).
    pub fn database_is_local(&self) -> bool {
        let Some(url) = &self.database_url else { return self.is_embedded() };
        url.expose_secret().parse::<tokio_postgres::Config>().is_ok_and(|parsed| palisade_store::tls::is_local(&parsed))
    }

    pub fn hash_workers(&self) -> usize {
        self.hash_workers.unwrap_or_else(cores)
    }
}

/// CPU cores this process may use (2 when the system cannot tell).
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Hides the password in `postgres://user:password@host/db` and in `password=…` key-value strings.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!("{}://{}:***@{}", &url[..scheme_end], &userinfo[..colon], &rest[at + 1..]);
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| if kv.to_lowercase().starts_with("password=") { "password=***".to_owned() } else { kv.to_owned() })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_in_both_url_forms() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/palisade"), "postgres://app:***@db:5432/palisade");
        assert_eq!(redact_url("postgres://app@db/palisade"), "postgres://app@db/palisade");
        assert_eq!(redact_url("host=db user=app password=s3cret dbname=x"), "host=db user=app password=*** dbname=x");
        assert!(!redact_url("postgres://a:p@ss@db/x").contains("p@ss"));
    }

    #[test]
    fn request_threads_leave_a_database_on_this_machine_half_the_cores() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap();
        assert_eq!(Config::default().worker_threads(), (cores / 2).max(1));
        let url = |url: &str| Config { database_url: Some(SecretString::from(url)), ..Config::default() };
        assert_eq!(url("postgres://app@db/x").worker_threads(), cores);
        assert_eq!(url("host=db.internal,127.0.0.1 user=app").worker_threads(), cores);
        assert_eq!(url("not a url ===").worker_threads(), cores);
        // On this machine: a Unix socket or loopback, as the embedded database.
        for local in ["host=/var/run/postgresql user=app", "postgres://app@localhost/x", "postgres://app@[::1]:5433/x"]
        {
            assert_eq!(url(local).worker_threads(), (cores / 2).max(1), "{local}");
        }
        assert_eq!(Config { worker_threads: Some(3), ..Config::default() }.worker_threads(), 3);
        // Zero threads would be a runtime that never runs a request.
        assert_eq!(Config { worker_threads: Some(0), ..Config::default() }.worker_threads(), 1);
    }
}
