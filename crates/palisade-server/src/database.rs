//! Connecting to PostgreSQL the way `serve`, `migrate` and the checks need: the embedded cluster
//! (started or attached, database created, migrated) or an external server from URLs.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use palisade_store::migrate::{self, RoleName};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::Client;

use crate::config::Config;
use crate::embedded::{self, EmbeddedCluster};

/// Connections resolved from the configuration.
pub struct Connections {
    pub runtime: Option<tokio_postgres::Config>,
    pub admin: Option<tokio_postgres::Config>,
    /// The key jobs' login (`<runtime role>_keys`): rotation and shredding, nothing else.
    pub keys: Option<tokio_postgres::Config>,
    /// The sign-in login (`<runtime role>_signin`): the transactions that open a session.
    pub signin: Option<tokio_postgres::Config>,
    /// Kept alive while the caller works; stopping it is the caller's last step.
    pub cluster: Option<EmbeddedCluster>,
}

/// One connection, over TLS where the policy says so (`palisade_store::tls`).
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let config = palisade_store::tls::with_policy(config.clone());
    let (client, connection) = config.connect(palisade_store::tls::connector()).await.map_err(|err| {
        let advice = palisade_store::tls::certificate_advice(&err);
        let context =
            advice.map_or("connecting to PostgreSQL".to_owned(), |a| format!("connecting to PostgreSQL: {a}"));
        anyhow::Error::new(err).context(context)
    })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "database connection closed");
        }
    });
    Ok(client)
}

fn parse_url(url: &SecretString, what: &str) -> Result<tokio_postgres::Config> {
    let text = url.expose_secret();
    let config = tokio_postgres::Config::from_str(text).map_err(|_| {
        if ["sslmode=verify", "sslrootcert", "sslcert", "sslkey"].iter().any(|libpq_only| text.contains(libpq_only)) {
            anyhow::anyhow!(
                "{what} uses a libpq TLS option this client does not take (sslmode=verify-ca/verify-full, \
                 sslrootcert, sslcert, sslkey): TLS to another machine is always verified here; drop the option \
                 and name the CA with PALISADE_DATABASE_CA_FILE"
            )
        } else {
            anyhow::anyhow!("{what} is not a valid PostgreSQL URL (postgres://user:password@host/db)")
        }
    })?;
    if let Some(problem) = plaintext_to_another_machine(&config, what) {
        // `serve` logs; the other commands have no log, so they print it.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!("{problem}");
        } else {
            eprintln!("warning: {problem}");
        }
    }
    Ok(config)
}

/// The warning for a connection that reaches another machine without TLS (`sslmode=disable`).
pub fn plaintext_to_another_machine(config: &tokio_postgres::Config, what: &str) -> Option<String> {
    (!palisade_store::tls::is_local(config)
        && palisade_store::tls::policy_mode(config) == tokio_postgres::config::SslMode::Disable)
        .then(|| {
            format!(
                "{what} reaches another machine without TLS (sslmode=disable): passwords are protected by SCRAM, \
                 but everything else crosses the network readable; remove sslmode=disable (TLS, verified) unless \
                 the network itself is encrypted"
            )
        })
}

/// Every configured database URL that parses, with the name of its setting.
pub fn configured_urls(config: &Config) -> Vec<(&'static str, tokio_postgres::Config)> {
    [
        ("PALISADE_DATABASE_URL", &config.database_url),
        ("PALISADE_DATABASE_ADMIN_URL", &config.database_admin_url),
        ("PALISADE_DATABASE_KEYS_URL", &config.database_keys_url),
        ("PALISADE_DATABASE_SIGNIN_URL", &config.database_signin_url),
    ]
    .into_iter()
    .filter_map(|(what, url)| Some((what, tokio_postgres::Config::from_str(url.as_ref()?.expose_secret()).ok()?)))
    .collect()
}

/// Opens the database for a command. Embedded: starts (or attaches to) the cluster, creates the
/// database and migrates it, so `serve` works with no setup at all.
pub async fn open(config: &Config) -> Result<Connections> {
    let role = RoleName::parse(&config.runtime_role).map_err(anyhow::Error::msg)?;
    if !config.is_embedded() {
        return Ok(Connections {
            runtime: config.database_url.as_ref().map(|u| parse_url(u, "PALISADE_DATABASE_URL")).transpose()?,
            admin: config
                .database_admin_url
                .as_ref()
                .map(|u| parse_url(u, "PALISADE_DATABASE_ADMIN_URL"))
                .transpose()?,
            keys: config.database_keys_url.as_ref().map(|u| parse_url(u, "PALISADE_DATABASE_KEYS_URL")).transpose()?,
            signin: config
                .database_signin_url
                .as_ref()
                .map(|u| parse_url(u, "PALISADE_DATABASE_SIGNIN_URL"))
                .transpose()?,
            cluster: None,
        });
    }
    let data_dir = config.data_dir.clone();
    let options = embedded::Options { settings: config.embedded_postgres_settings.clone() };
    let cluster = tokio::task::spawn_blocking(move || EmbeddedCluster::start(&data_dir, &options))
        .await
        .context("embedded PostgreSQL start task")??;
    let bootstrap = connect(&cluster.admin_config("postgres")).await?;
    embedded::ensure_database(&bootstrap, embedded::DATABASE).await?;
    drop(bootstrap);
    let admin = cluster.admin_config(embedded::DATABASE);
    let mut client = connect(&admin).await?;
    let report = migrate::migrate(&mut client, &role, cluster.login_passwords()).await?;
    for name in &report.applied {
        tracing::info!(migration = %name, "applied migration");
    }
    if let Some(days) = instance_audit_retention(config) {
        migrate::set_instance_audit_retention(&client, days).await?;
    }
    Ok(Connections {
        runtime: Some(cluster.runtime_config(role.as_str(), embedded::DATABASE)),
        admin: Some(admin),
        keys: Some(cluster.keys_config(role.as_str(), embedded::DATABASE)),
        signin: Some(cluster.signin_config(role.as_str(), embedded::DATABASE)),
        cluster: Some(cluster),
    })
}

/// `palisade migrate`: schema and runtime role over the admin connection.
pub async fn migrate_command(config: &Config) -> Result<()> {
    let role = RoleName::parse(&config.runtime_role).map_err(anyhow::Error::msg)?;
    if config.is_embedded() {
        let mut connections = open(config).await?;
        println!(
            "Embedded database migrated to version {}; runtime role {} is in place.",
            migrate::latest_version(),
            role.as_str()
        );
        if let Some(cluster) = connections.cluster.as_mut() {
            cluster.stop()?;
        }
        return Ok(());
    }
    let Some(admin_url) = &config.database_admin_url else {
        bail!("set PALISADE_DATABASE_ADMIN_URL to an owner or superuser connection to migrate an external database");
    };
    let admin = parse_url(admin_url, "PALISADE_DATABASE_ADMIN_URL")?;
    // The logins' passwords, if the operator gave their URLs too.
    let password_of = |url: &Option<SecretString>, what: &str| -> Result<Option<SecretString>> {
        Ok(match url {
            Some(url) => parse_url(url, what)?
                .get_password()
                .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned())),
            None => None,
        })
    };
    let password = password_of(&config.database_url, "PALISADE_DATABASE_URL")?;
    let keys_password = password_of(&config.database_keys_url, "PALISADE_DATABASE_KEYS_URL")?;
    let signin_password = password_of(&config.database_signin_url, "PALISADE_DATABASE_SIGNIN_URL")?;
    let mut client = connect(&admin).await?;
    let passwords = migrate::LoginPasswords {
        runtime: password.as_ref(),
        keys: keys_password.as_ref(),
        signin: signin_password.as_ref(),
    };
    let report = migrate::migrate(&mut client, &role, passwords).await?;
    if let Some(days) = instance_audit_retention(config) {
        migrate::set_instance_audit_retention(&client, days).await?;
    }
    println!(
        "Applied {} migration(s) ({} already current); runtime role {} {}.",
        report.applied.len(),
        report.already_current,
        role.as_str(),
        if report.role_created { "created" } else { "checked" }
    );
    if report.role_created && password.is_none() {
        println!(
            "Set its password: ALTER ROLE {} PASSWORD '…'; then give it to serve in PALISADE_DATABASE_URL.",
            role.as_str()
        );
    }
    if report.keys_role_created && keys_password.is_none() {
        println!(
            "Key rotation and shredding run as {role}_keys: set its password (ALTER ROLE {role}_keys PASSWORD '…') \
             and give it to serve in PALISADE_DATABASE_KEYS_URL.",
            role = role.as_str()
        );
    }
    if report.signin_role_created && signin_password.is_none() {
        println!(
            "Sessions are opened as {role}_signin: set its password (ALTER ROLE {role}_signin PASSWORD '…') \
             and give it to serve in PALISADE_DATABASE_SIGNIN_URL (serve needs it: nobody can sign in without it).",
            role = role.as_str()
        );
    }
    Ok(())
}

/// The instance chain's retention, when the operator configured one (`Config::load` keeps it
/// within 365..=36500). Unset, the database keeps what it has: a run without the setting never
/// shortens a longer retention set before.
pub fn instance_audit_retention(config: &Config) -> Option<i32> {
    config.instance_audit_retention_days.map(|days| i32::try_from(days).unwrap_or(i32::MAX))
}

/// Warns when the instance chain's retention in the database is not the configured one: with an
/// external database only `palisade migrate` writes it (the runtime role may only read it).
pub async fn warn_on_instance_retention_drift(db: &palisade_store::Db, config: &Config) {
    let Some(configured) = instance_audit_retention(config) else { return };
    let stored = match db.client().await {
        Ok(client) => client.query_one("SELECT retention_days FROM palisade.instance_audit", &[]).await,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the instance audit retention");
            return;
        }
    };
    match stored {
        Ok(row) if row.get::<_, i32>(0) != configured => tracing::warn!(
            database = row.get::<_, i32>(0),
            configured,
            "the instance audit retention in the database is not the configured one: run `palisade migrate` \
             (admin connection) to apply instance_audit_retention_days; meanwhile this server purges no instance \
             event younger than the longer of the two"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read the instance audit retention"),
    }
}
