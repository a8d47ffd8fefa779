//! The `palisade` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use palisade_server::config::{Config, Overrides};
use palisade_server::{controls, database, logging, serve};

// Request handling allocates many small, short-lived buffers across threads, and every password
// hash a 19 MiB block on a hashing thread. glibc malloc (tuned, until 12-07, to keep those blocks
// in its arenas rather than map and fault them in per hash) spent ~11 % of the server's CPU on
// refresh rotations (perf) and held ~380 MiB after a few hundred sign-ins; mimalloc: ~10 % less
// CPU per rotation, sign-ins ~10 % cheaper, ~91 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "palisade", version, about = "Multi-tenant platform server with verifiable security controls")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// TOML configuration file (env PALISADE_CONFIG; default ./palisade.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory for the embedded database and generated secrets (env PALISADE_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded PostgreSQL unless PALISADE_DATABASE_URL is set).
    Serve {
        /// Address to listen on (env PALISADE_LISTEN; default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve plain HTTP (only behind a TLS-terminating proxy; list it in trusted_proxies so
        /// HSTS still goes out). Env PALISADE_INSECURE_HTTP=true.
        #[arg(long)]
        insecure_http: bool,
    },
    /// Create or upgrade the schema and the runtime role (PALISADE_DATABASE_ADMIN_URL).
    Migrate,
    /// Instance administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Live checks of the security controls.
    Controls {
        #[command(subcommand)]
        command: ControlsCommand,
    },
    /// Account tools.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Read the local outbox (mail written when no SMTP server is configured).
    Outbox {
        /// Print message N (1 = oldest) instead of the list.
        #[arg(long)]
        show: Option<usize>,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Access-token signing keys (published at /.well-known/jwks.json).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make an existing account an instance administrator.
    Grant {
        #[arg(long)]
        email: String,
    },
    /// Unlock an account locked by failed sign-ins, before the lock runs out.
    Unlock {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Import accounts with bcrypt hashes from a JSON file (all or nothing).
    Import {
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ControlsCommand {
    /// Run every check; exits non-zero if any fails.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Base URL of a running server, for checks that probe it.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Seal pending events, then recompute an organization's hash chain (or the instance chain)
    /// and check its signed checkpoints; exits 1 if anything does not verify.
    #[command(group = clap::ArgGroup::new("chain").required(true).multiple(false).args(["org", "instance"]))]
    Verify {
        /// The organization (org_…).
        #[arg(long)]
        org: Option<String>,
        /// The instance chain: the events of no organization (sign-ups, sign-ins, lockouts).
        #[arg(long)]
        instance: bool,
        /// A checkpoint document you kept (from /audit-checkpoints/latest or `palisade audit
        /// checkpoint`): the chain must still agree with it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest signed checkpoint of a chain, to keep where the server cannot reach it.
    #[command(group = clap::ArgGroup::new("chain").required(true).multiple(false).args(["org", "instance"]))]
    Checkpoint {
        /// The organization (org_…).
        #[arg(long)]
        org: Option<String>,
        /// The instance chain.
        #[arg(long)]
        instance: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the access-token signing keys and their state.
    List,
    /// Start signing with a new key now; older keys stay published until their tokens expire.
    RotateSigning,
    /// Emergency: stop accepting tokens signed by KID at once (a new key takes over if it was
    /// the signing key). Every token it signed stops working; their users sign in again.
    RevokeSigning {
        /// The key id, as `palisade keys list` shows it (ed25519-…).
        kid: String,
    },
    /// Replace the bearer key (the MAC key that proves an access token's session to the
    /// database) without ending any token: every node uses the new key within a second.
    RotateBearer {
        /// Refuse the old key at once instead of after a minute (it is known to have leaked).
        #[arg(long)]
        now: bool,
    },
    /// Data keys of the instance and of every organization: provider, state, created, next
    /// rotation, values each encrypts, rotations running.
    Status,
    /// Rotate an organization's data key now and re-encrypt its values (progress shown).
    Rotate {
        /// The organization (org_…).
        #[arg(long)]
        org: String,
    },
    /// Rotate the key provider's master key and every wrapping key (data keys are rewrapped;
    /// no data is re-encrypted).
    RotateKek,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (listen, insecure_http) = match &cli.command {
        Command::Serve { listen, insecure_http } => (*listen, *insecure_http),
        _ => (None, false),
    };
    let overrides = Overrides {
        config_file: cli.common.config.clone(),
        data_dir: cli.common.data_dir.clone(),
        listen,
        insecure_http,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Serve { .. }) {
        logging::init(&config);
    }
    if let Err(err) = palisade_store::tls::trust(config.database_ca_file.as_deref()) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<ExitCode> {
    match command {
        Command::Serve { .. } => serve::run(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => database::migrate_command(&config).await.map(|()| ExitCode::SUCCESS),
        Command::Admin { command: AdminCommand::Grant { email } } => admin(&config, &email, AdminAction::Grant).await,
        Command::Admin { command: AdminCommand::Unlock { email } } => admin(&config, &email, AdminAction::Unlock).await,
        Command::Controls { command: ControlsCommand::Check { json, url } } => controls_check(&config, json, url).await,
        Command::Outbox { show } => outbox(&config, show),
        Command::Users { command: UsersCommand::Import { file } } => {
            let mut connections = database::open(&config).await?;
            let admin = connections
                .admin
                .clone()
                .context("set PALISADE_DATABASE_ADMIN_URL: importing needs the admin connection")?;
            let mut client = database::connect(&admin).await?;
            let outcome = palisade_server::import::run(&mut client, &file).await;
            if let Some(cluster) = connections.cluster.as_mut() {
                cluster.stop()?;
            }
            outcome.map(|()| ExitCode::SUCCESS)
        }
        Command::Audit { command } => {
            let chain = match &command {
                AuditCommand::Verify { org, instance, .. } | AuditCommand::Checkpoint { org, instance } => {
                    palisade_server::audit_cli::chain_named(org.as_deref(), *instance)?
                }
            };
            let mut connections = database::open(&config).await?;
            let admin = connections
                .admin
                .clone()
                .context("set PALISADE_DATABASE_ADMIN_URL: verifying reads every event over the admin connection")?;
            let client = database::connect(&admin).await?;
            let outcome = match command {
                AuditCommand::Verify { checkpoint, json, .. } => {
                    palisade_server::audit_cli::verify(&client, chain, checkpoint.as_deref(), json).await
                }
                AuditCommand::Checkpoint { .. } => palisade_server::audit_cli::print_checkpoint(&client, chain).await,
            };
            drop(client);
            if let Some(cluster) = connections.cluster.as_mut() {
                cluster.stop()?;
            }
            outcome
        }
        Command::Keys { command } => keys(&config, command).await,
        Command::Config { command: ConfigCommand::Check } => {
            println!("{}", config.describe());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Clone, Copy)]
enum AdminAction {
    Grant,
    Unlock,
}

async fn admin(config: &Config, email: &str, action: AdminAction) -> Result<ExitCode> {
    let email = palisade_core::Email::parse(email).map_err(|e| anyhow::anyhow!("--email {}", e.message))?;
    let mut connections = database::open(config).await?;
    let admin =
        connections.admin.clone().context("set PALISADE_DATABASE_ADMIN_URL: this needs the admin connection")?;
    let client = database::connect(&admin).await?;
    let outcome = match action {
        AdminAction::Grant => palisade_store::repo::users::grant_instance_admin(&client, &email).await,
        AdminAction::Unlock => palisade_store::repo::users::unlock(&client, &email).await,
    };
    if let Some(cluster) = connections.cluster.as_mut() {
        cluster.stop()?;
    }
    match outcome {
        Ok(user) => {
            match action {
                AdminAction::Grant => println!("{user} is now an instance administrator."),
                AdminAction::Unlock => println!("{user} is unlocked and may sign in again."),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(palisade_store::StoreError::NotFound) => {
            eprintln!("error: no account with that email; sign up first, then grant.");
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}

fn outbox(config: &Config, show: Option<usize>) -> Result<ExitCode> {
    if config.smtp_url.is_some() {
        println!("Mail goes to the SMTP server in smtp_url; there is no local outbox.");
        return Ok(ExitCode::SUCCESS);
    }
    let outbox = palisade_mail::Outbox::open(config.outbox_dir())?;
    let entries = outbox.list()?;
    match show {
        Some(n) => {
            let entry = entries.get(n.wrapping_sub(1)).with_context(|| {
                format!("no message {n}: the outbox holds {} (see `palisade outbox`)", entries.len())
            })?;
            print!("{}", outbox.read(entry)?);
        }
        None if entries.is_empty() => println!("The outbox ({}) is empty.", outbox.dir().display()),
        None => {
            println!("{:>3}  {:<19}  {:<32}  SUBJECT", "#", "WRITTEN (UTC)", "TO");
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            for (i, e) in entries.iter().enumerate() {
                let when = time::OffsetDateTime::from(e.written).format(&format).unwrap_or_default();
                println!("{:>3}  {:<19}  {:<32}  {}", i + 1, when, e.to, e.subject);
            }
            println!("Show one with `palisade outbox --show N`. Messages are deleted after 7 days.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn controls_check(config: &Config, json: bool, url: Option<String>) -> Result<ExitCode> {
    let mut connections = database::open(config).await?;
    let runtime = connections.runtime.clone().context("set PALISADE_DATABASE_URL (the runtime role's connection)")?;
    let client = database::connect(&runtime).await?;
    let admin = match connections.admin.clone() {
        Some(admin) => Some(database::connect(&admin).await?),
        None => None,
    };
    let keys = match connections.keys.clone() {
        Some(keys) => Some(database::connect(&keys).await?),
        None => None,
    };
    let checked = controls::CheckConnections { runtime: &client, admin: admin.as_ref(), keys: keys.as_ref() };
    let results = controls::run_all(checked, url.as_deref(), config).await;
    drop((client, admin, keys));
    if let Some(cluster) = connections.cluster.as_mut() {
        cluster.stop()?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", controls::render_table(&results));
    }
    let failed = results.iter().any(|r| r.status == controls::Status::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn keys(config: &Config, command: KeysCommand) -> Result<ExitCode> {
    let mut connections = database::open(config).await?;
    let runtime = connections.runtime.clone().context("set PALISADE_DATABASE_URL (the runtime role's connection)")?;
    let db = palisade_store::Db::connect(runtime, 2)?;
    let mut app = serve::build_app(
        config,
        db,
        std::sync::Arc::new(palisade_core::SystemClock),
        std::sync::Arc::new(palisade_core::SystemRandomness),
    )?;
    app.key_jobs = serve::key_jobs_pool(&connections).await?;
    // The access-token and bearer keys are the sign-in login's to change (0037, 0043).
    if matches!(
        command,
        KeysCommand::RotateBearer { .. } | KeysCommand::RotateSigning | KeysCommand::RevokeSigning { .. }
    ) {
        app.sign_in = Some(serve::sign_in_pool(&connections, 1).await?);
    }
    let outcome = keys_command(&app, command).await;
    drop(app);
    if let Some(cluster) = connections.cluster.as_mut() {
        cluster.stop()?;
    }
    outcome
}

async fn keys_command(app: &palisade_app::App, command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::List => {
            let keys = app.list_signing_keys().await?;
            if keys.is_empty() {
                println!("No access-token key yet: the server creates one when it starts.");
                return Ok(ExitCode::SUCCESS);
            }
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
            let at = |t: Option<time::OffsetDateTime>| t.and_then(|t| t.format(&format).ok()).unwrap_or_default();
            println!("{:<24}  {:<9}  {:<16}  {:<16}  {:<16}", "KEY ID", "STATE", "CREATED", "RETIRED", "REVOKED");
            for key in keys {
                let state = match (key.revoked_at, key.retired_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(_)) => "retired",
                    (None, None) => "signing",
                };
                println!(
                    "{:<24}  {:<9}  {:<16}  {:<16}  {:<16}",
                    key.key_id,
                    state,
                    at(Some(key.created_at)),
                    at(key.retired_at),
                    at(key.revoked_at)
                );
            }
        }
        KeysCommand::RotateSigning => {
            let kid = app.rotate_signing_key().await?;
            println!("{kid} signs access tokens from now on (every node within a second).");
            println!("Earlier keys stay in /.well-known/jwks.json until the tokens they signed have expired.");
        }
        KeysCommand::RevokeSigning { kid } => match app.revoke_signing_key(&kid).await {
            Ok(()) => {
                println!("{kid} is revoked: tokens it signed are refused (every node within a second).");
                println!("It is no longer published; its users sign in again. See `palisade keys list`.");
            }
            Err(palisade_app::AppError::NotFound) => {
                eprintln!("error: no access-token key {kid} that is not already revoked; see `palisade keys list`.");
                return Ok(ExitCode::FAILURE);
            }
            Err(err) => return Err(err.into()),
        },
        KeysCommand::RotateBearer { now } => {
            let grace = if now { 0 } else { palisade_app::bearer_key::BEARER_KEY_GRACE_SECONDS };
            let id = app.rotate_bearer_key(grace).await?;
            println!("Bearer key {id} proves access-token sessions from now on (every node within a second).");
            if now {
                println!(
                    "The previous key is refused already: requests on a node that has not reloaded yet get 401 for up to a second."
                );
            } else {
                println!(
                    "The previous key is accepted for {grace} more seconds; access tokens keep working throughout."
                );
            }
        }
        KeysCommand::Status => return palisade_server::keys_cli::status(app).await,
        KeysCommand::Rotate { org } => return palisade_server::keys_cli::rotate(app, &org).await,
        KeysCommand::RotateKek => return palisade_server::keys_cli::rotate_kek(app).await,
    }
    Ok(ExitCode::SUCCESS)
}
