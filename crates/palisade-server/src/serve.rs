//! `palisade serve`: open the database, refuse an over-privileged role, serve until SIGTERM,
//! drain, stop the periodic database work, stop the embedded cluster.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use palisade_api::ApiState;
use palisade_api::client_addr::TrustedProxies;
use palisade_api::rate_limit::Limiter;
use palisade_app::{App, Lockout, Policy};
use palisade_auth::PasswordHasher;
use palisade_core::{Clock, Randomness, SystemClock, SystemRandomness};
use palisade_store::{Db, catalog};
use secrecy::ExposeSecret;

use crate::config::{Config, Switch};
use crate::database;

/// Builds the use-case layer over a runtime pool.
pub fn build_app(config: &Config, db: Db, clock: Arc<dyn Clock>, random: Arc<dyn Randomness>) -> Result<App> {
    let public_url = config.public_url();
    let tokens = palisade_app::TokenKeys::new(public_url.clone(), format!("{}/api", public_url.trim_end_matches('/')));
    let origin = config.webauthn_origin();
    let origin_url = url::Url::parse(&origin)
        .with_context(|| format!("webauthn_origin {origin:?} is not a URL (e.g. https://app.example.com)"))?;
    let webauthn = webauthn_rs::WebauthnBuilder::new(&config.webauthn_rp_id, &origin_url)
        .and_then(|builder| builder.rp_name("Palisade").build())
        .map_err(|err| {
            anyhow::anyhow!(
                "WebAuthn cannot use webauthn_rp_id {:?} with origin {origin}: {err}. The id must be the origin's host \
                 or a parent domain of it, and not an IP address",
                config.webauthn_rp_id
            )
        })?;
    if !palisade_auth::api_key::valid_env(&config.api_key_env) {
        bail!(
            "api_key_env {:?} cannot be used in API keys: use 1 to 12 lower-case letters or digits (e.g. live, test)",
            config.api_key_env
        );
    }
    Ok(App {
        db,
        key_jobs: None,
        sign_in: None,
        bearer_key: Arc::default(),
        hasher: PasswordHasher::new(config.hash_workers(), config.hash_queue),
        clock,
        random,
        policy: Policy {
            session_lifetime: time::Duration::minutes(config.session_lifetime_minutes),
            session_idle_timeout: time::Duration::minutes(config.session_idle_minutes),
            access_token_ttl: time::Duration::minutes(config.access_token_minutes.clamp(1, 60)),
            refresh_lifetime: time::Duration::days(config.refresh_lifetime_days.clamp(1, 365)),
            signing_key_rotation: time::Duration::days(config.signing_key_rotation_days.clamp(1, 365)),
            lockout: Lockout {
                threshold: config.lockout_threshold.max(1),
                duration: time::Duration::minutes(config.lockout_minutes.max(1)),
            },
            verification_valid_for: time::Duration::hours(48),
            reset_valid_for: time::Duration::minutes(30),
            public_url: config.public_url(),
            collections_per_org: config.collections_per_org.max(1),
            record_quota: palisade_store::repo::records::RecordQuota {
                records: config.records_per_org.max(1),
                bytes: config.record_bytes_per_org.max(1),
            },
            api_key_env: config.api_key_env.clone(),
            data_key_rotation: time::Duration::days(config.data_key_rotation_days.clamp(1, 3650)),
            org_deletion_grace: time::Duration::days(config.org_deletion_grace_days.clamp(1, 365)),
            instance_audit_retention_days: crate::database::instance_audit_retention(config),
        },
        mailer: config.mailer()?,
        keys: Arc::new(config.instance_key()?),
        keyring: Arc::new(config.keyring()?),
        schemas: Arc::default(),
        audit_key: Arc::default(),
        tokens: Arc::new(tokens),
        webauthn: Arc::new(webauthn),
        decoy_template: Arc::new(palisade_app::webauthn::decoy_template(&config.webauthn_rp_id)),
        edge: Arc::default(),
        access_events: Arc::default(),
        export_slots: Arc::new(palisade_app::ExportSlots::for_pool(config.db_pool_size)),
    })
}

/// The key jobs' pool (two connections as the `_keys` login), checked like the runtime role's:
/// it too must own nothing and respect row-level security.
pub async fn key_jobs_pool(connections: &crate::database::Connections) -> Result<Option<Db>> {
    let Some(keys) = connections.keys.clone() else { return Ok(None) };
    let db = Db::connect(keys, 2)?;
    refuse_unsafe_role(&db).await.context("the key jobs' login (PALISADE_DATABASE_KEYS_URL)")?;
    Ok(Some(db))
}

/// The sign-in pool (the `_signin` login), checked like the runtime role's. Required: without
/// it nobody could sign in, so `serve` refuses to start with what to set.
pub async fn sign_in_pool(connections: &crate::database::Connections, size: usize) -> Result<Db> {
    let Some(signin) = connections.signin.clone() else {
        bail!(
            "set PALISADE_DATABASE_SIGNIN_URL to the sign-in login's connection (the `<runtime role>_signin` role \
             `palisade migrate` creates; give it a password first): sessions are opened, and access-token keys \
             changed, over it, never over the runtime role's"
        );
    };
    let db = Db::connect(signin, size)?;
    refuse_unsafe_role(&db).await.context("the sign-in login (PALISADE_DATABASE_SIGNIN_URL)")?;
    Ok(db)
}

/// Refuses to serve with a role that could step around row-level security.
pub async fn refuse_unsafe_role(db: &Db) -> Result<()> {
    let client = db.client().await.context("connecting as the runtime role")?;
    let facts = catalog::current_role_facts(&client).await?;
    let problems = facts.problems();
    if !problems.is_empty() {
        bail!(
            "refusing to start: {}. Serve with the unprivileged runtime role that `palisade migrate` creates (PALISADE_DATABASE_URL).",
            problems.join("; ")
        );
    }
    Ok(())
}

/// A server process holds keys, sessions and secrets in memory: it never writes a core dump,
/// and other processes of its user cannot read its memory (not dumpable, so no ptrace either).
fn forbid_core_dumps() -> Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("turning core dumps off (RLIMIT_CORE)")?;
    nix::sys::prctl::set_dumpable(false).context("marking the process not dumpable")?;
    Ok(())
}

/// Where the kernel groups processes for CPU sharing by session (autogroup: Linux with
/// `sched_autogroup_enabled`, tasks not placed in a cpu cgroup), thread nice values only rank
/// threads inside their group; between groups each gets an equal share. PostgreSQL puts every
/// backend in a session (and so a group) of its own, so a sign-in flood's hashing threads, nice
/// +10 inside this process's group, still made that group compete with each backend as an equal:
/// reads of signed-in users waited for the database (p99 ~50 ms against ~5 ms, measured).
/// So while passwords are being hashed, this process's group runs at the hashing threads' nice,
/// and the database's backends go first (within the group the request threads still go before
/// hashing); a second after the last hash it is back at nice 0, so that at other times the server
/// does not yield to every other process on the machine (its load generators, Redis).
/// Only when this process leads its own session (a service manager starts it so, or `setsid`):
/// sharing a terminal's session, the group holds the user's shell too, and is left alone.
/// The file is opened here, before the process is made not dumpable: from then on only root may
/// open its /proc files, while an open handle keeps working.
fn open_scheduling_group() -> Option<std::fs::File> {
    if nix::unistd::getsid(None).ok() != Some(nix::unistd::getpid()) {
        tracing::debug!("not a session leader: the CPU scheduling group is left as it is");
        return None;
    }
    match std::fs::OpenOptions::new().write(true).open("/proc/self/autogroup") {
        Ok(file) => Some(file),
        // No autogroup in this kernel: the nice values work across the whole machine already.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            tracing::warn!(error = %err, "the CPU scheduling group cannot be adjusted");
            None
        }
    }
}

/// How often the group's nice follows the hashing, and how many quiet ticks bring it back.
const SCHEDULING_TICK: std::time::Duration = std::time::Duration::from_millis(200);
const QUIET_TICKS: u32 = 5;

/// Lowers the scheduling group while passwords are hashed (see `open_scheduling_group`), on a
/// thread of its own: a change is a write of the nice value, which the kernel allows unprivileged
/// processes ten times a second at most.
fn govern_scheduling_group(group: std::fs::File, hasher: PasswordHasher) {
    use std::io::Write;
    let spawned = std::thread::Builder::new().name("palisade-sched".into()).spawn(move || {
        let (mut lowered, mut seen, mut quiet) = (false, hasher.hashes_started(), 0u32);
        loop {
            std::thread::sleep(SCHEDULING_TICK);
            let started = hasher.hashes_started();
            let busy = started != seen || hasher.hashing_now();
            seen = started;
            quiet = if busy { 0 } else { quiet.saturating_add(1) };
            let lower = busy || (lowered && quiet < QUIET_TICKS);
            if lower == lowered {
                continue;
            }
            let nice = if lower { palisade_auth::hash_pool::HASH_NICE } else { 0 };
            // One write of the whole value (the file cannot seek; each write is read on its own).
            match (&group).write(nice.to_string().as_bytes()) {
                Ok(_) => {
                    lowered = lower;
                    tracing::debug!(nice, "scheduling group adjusted");
                }
                // Changed too recently (the kernel's rate limit): the next tick tries again.
                Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "the CPU scheduling group cannot be adjusted");
                    return;
                }
            }
        }
    });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "the CPU scheduling group will not follow password hashing");
    }
}

pub async fn run(config: Config) -> Result<()> {
    // Before forbid_core_dumps: a process that is not dumpable cannot open its own /proc files.
    let scheduling_group = open_scheduling_group();
    forbid_core_dumps()?;
    let mut connections = database::open(&config).await?;
    let runtime = connections.runtime.clone().context(
        "set PALISADE_DATABASE_URL to the runtime role's connection (or unset both URLs for the embedded database)",
    )?;
    let db = Db::connect(runtime, config.db_pool_size)?;
    refuse_unsafe_role(&db).await?;
    database::warn_on_instance_retention_drift(&db, &config).await;
    let mut app = build_app(&config, db, Arc::new(SystemClock), Arc::new(SystemRandomness))?;
    app.key_jobs = key_jobs_pool(&connections).await?;
    // Sign-ins are bounded by password hashing, a few per core: four connections are plenty.
    app.sign_in = Some(sign_in_pool(&connections, 4).await?);
    app.load_bearer_key().await.context("reading the bearer key through the sign-in login")?;
    if let Some(group) = scheduling_group {
        govern_scheduling_group(group, app.hasher.clone());
    }
    tracing::info!(mail = %app.mailer.describe(), "transactional mail");
    sweep_outbox(&config);
    if let Err(err) = app.readiness().await {
        bail!("the database is not ready: {err}. Run `palisade migrate` first.");
    }
    // Access-token keys: load (creating the first key on a new instance), then stay current.
    app.reload_token_keys().await.context("loading the access-token signing keys")?;
    // The loops that use the database, stopped before it is (see the end of `run`).
    let mut background = tokio::task::JoinSet::new();
    background.spawn(app.clone().run_token_keys(std::time::Duration::from_secs(1)));
    // The audit sequencer: seals committed events into their organizations' chains and signs
    // checkpoints. Every node runs one; they take turns in the database.
    background.spawn(
        app.clone().run_audit_sequencer(std::time::Duration::from_millis(config.audit_seal_interval_ms.max(10))),
    );
    // Runs of failed sign-ins are forgotten a day after their last failure (0030).
    background.spawn(app.clone().run_login_attempt_pruning(std::time::Duration::from_secs(3600)));
    // Data-key rotation: starts scheduled rotations and re-encrypts in batches; resumes after
    // any crash because its progress is what the database still holds under retired keys.
    if app.key_jobs.is_some() {
        background.spawn(app.clone().run_key_rotation(std::time::Duration::from_secs(10)));
    } else {
        tracing::warn!(
            "no key jobs' connection (PALISADE_DATABASE_KEYS_URL): scheduled data-key rotation and \
             organization shredding do not run on this node"
        );
    }
    let state = ApiState::new(palisade_api::ApiShared {
        app,
        secure_cookies: config.public_url().starts_with("https://"),
        limiter: limiter(&config)?,
        trusted_proxies: trusted_proxies(&config)?,
        max_concurrent_requests: config.max_concurrent_requests,
        request_timeout: std::time::Duration::from_secs(config.request_timeout_secs.clamp(1, 3600)),
        export_stall: std::time::Duration::from_secs(config.audit_export_stall_seconds.clamp(1, 3600)),
    });
    let router = palisade_api::router_with(state.clone(), palisade_web::console(state));
    let tls = tls_config(&config)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
        format!("cannot listen on {}: is another server using it? Choose another with --listen", config.listen)
    })?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, database = if config.is_embedded() { "embedded" } else { "external" }, "palisade is listening");
    eprintln!(
        "Palisade is running: open {} (API docs at {}/docs). Stop with Ctrl-C.",
        config.public_url(),
        config.public_url()
    );
    let header_read_timeout = std::time::Duration::from_secs(config.header_read_timeout_secs.clamp(1, 300));
    crate::listener::serve(listener, router, tls, header_read_timeout, shutdown).await;
    tracing::info!("drained in-flight requests; stopping");
    // The periodic work stops before the database does: a pass that started meanwhile is rolled
    // back with its connection (each is one transaction), and none tries to reconnect to a
    // cluster shutting down (which logged connection errors on every clean stop).
    background.shutdown().await;
    if let Some(cluster) = connections.cluster.as_mut() {
        tokio::task::block_in_place(|| cluster.stop())?;
    }
    Ok(())
}

/// The request budgets, unless rate limits are off (then a warning says so). In process, or
/// shared through Redis when `redis_url` is set.
pub fn limiter(config: &Config) -> Result<Option<Arc<Limiter>>> {
    if config.rate_limits.mode == Switch::Off {
        tracing::warn!("rate limits are OFF (PALISADE_RATE_LIMITS=off): only for tests and benchmarks");
        return Ok(None);
    }
    let redis_url = config.redis_url.as_ref().map(|url| url.expose_secret().to_owned());
    let redis_ca = match &config.redis_ca_file {
        Some(path) => Some(palisade_store::tls::read_ca_file(path, "redis_ca_file", "the Redis server's")?.0),
        None => None,
    };
    let limiter = Limiter::new(
        config.rate_limits.budgets(),
        redis_url.as_deref(),
        redis_ca.as_deref(),
        config.rate_limits.on_redis_failure,
    )
    .map_err(|why| anyhow::anyhow!("{why} (PALISADE_REDIS_URL, e.g. redis://127.0.0.1:6379)"))?;
    tracing::info!(
        shared = redis_url.is_some(),
        budgets = ?config.rate_limits.budgets(),
        "rate limits on{}",
        if redis_url.is_some() { ", shared through Redis" } else { ", in process" }
    );
    let limiter = Arc::new(limiter);
    let sweeper = limiter.clone();
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            sweeper.forget_idle();
        }
    });
    Ok(Some(limiter))
}

/// The TLS configuration to serve with, or `None` for plain HTTP (`--insecure-http`, warned).
/// A configured certificate is watched and reloaded; a self-signed one is announced with its
/// fingerprint.
fn tls_config(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(files) = config.certificate_files()? else {
        tracing::warn!(
            "serving plain HTTP (--insecure-http): only behind a TLS-terminating proxy listed in trusted_proxies"
        );
        return Ok(None);
    };
    let (server_config, certificate) = crate::tls::server_config(&files)?;
    let fingerprint = certificate.current_fingerprint();
    tracing::info!(%fingerprint, self_signed = files.self_signed, cert = %files.cert.display(), "TLS certificate");
    if files.self_signed {
        eprintln!(
            "HTTPS with a self-signed certificate for localhost (SHA-256 {fingerprint}); browsers will warn. \
             Set tls_cert_file and tls_key_file to serve a real one."
        );
    } else {
        tokio::spawn(certificate.watch(files, std::time::Duration::from_secs(2)));
    }
    Ok(Some(server_config))
}

/// The proxies whose forwarding headers are believed.
pub fn trusted_proxies(config: &Config) -> Result<TrustedProxies> {
    TrustedProxies::parse(&config.trusted_proxies).map_err(|why| anyhow::anyhow!(why))
}

/// Deletes outbox messages older than 7 days, now and every hour.
fn sweep_outbox(config: &Config) {
    if config.smtp_url.is_some() {
        return;
    }
    let Ok(outbox) = palisade_mail::Outbox::open(config.outbox_dir()) else { return };
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            match outbox.sweep(std::time::SystemTime::now()) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "deleted outbox messages older than 7 days"),
                Err(err) => tracing::warn!(error = %err, "sweeping the outbox failed"),
            }
        }
    });
}

/// Installs the SIGTERM and SIGINT handlers now and returns what completes on the first of them.
/// Now, not on the future's first poll: the accept loop may answer a readiness probe before it
/// polls this, and a SIGTERM in that gap met the default action and killed the process instead
/// of draining it (seen once in CI as a non-zero exit after SIGTERM).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: draining"),
            _ = int.recv() => tracing::info!("SIGINT received: draining"),
        }
    })
}
