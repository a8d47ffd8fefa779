//! PostgreSQL connections over TLS: which connections use it, and whose certificates they accept.
//!
//! The policy is stricter than libpq's default (`prefer`: TLS if the server offers it, plaintext
//! otherwise, no certificate check): a connection to a host that is not this machine always uses
//! TLS, with the certificate chain and the host name verified, unless its URL says
//! `sslmode=disable`. A connection to this machine (a Unix socket, a loopback address,
//! `localhost`) goes without TLS unless its URL says `sslmode=require`; over TCP it is then
//! verified the same way (PostgreSQL speaks no TLS on a Unix socket, so `require` cannot connect
//! there). One mode covers every host of a URL: a host list that names another machine makes
//! them all TLS, and a Unix socket among them then cannot connect. There is no "encrypted but
//! unverified" mode: it protects against nobody able to intercept the connection, which is whom
//! TLS is for.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Whom database connections trust; `None` until set or first used (then Mozilla's roots).
static CONNECTOR: RwLock<Option<MakeRustlsConnect>> = RwLock::new(None);

/// Whether every host of `config` is this machine: a Unix socket, a loopback address, `localhost`.
/// A `hostaddr` (the address actually dialled, the host then only names the certificate) must be
/// loopback too.
pub fn is_local(config: &tokio_postgres::Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => palisade_core::net::is_this_machine(name),
        })
        && config.get_hostaddrs().iter().all(|address| address.is_loopback())
}

/// The TLS mode the policy gives a connection to `config`'s hosts: `Disable` or `Require`.
pub fn policy_mode(config: &tokio_postgres::Config) -> SslMode {
    match config.get_ssl_mode() {
        SslMode::Disable => SslMode::Disable,
        SslMode::Require => SslMode::Require,
        // `prefer` (also what tokio-postgres assumes when the URL names no mode) never falls back
        // to plaintext here: required for other machines, off for this one.
        _ if is_local(config) => SslMode::Disable,
        _ => SslMode::Require,
    }
}

/// `config` with the policy's mode set.
pub fn with_policy(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let mode = policy_mode(&config);
    config.ssl_mode(mode);
    config
}

/// Why the database's CA certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(String);

/// From now on, database certificates must chain to a CA in `ca_file` (PEM, one or more
/// certificates); `None`: to one of Mozilla's roots (the default). Set at start-up, before the
/// first connection.
pub fn trust(ca_file: Option<&Path>) -> Result<(), TrustError> {
    let connector = MakeRustlsConnect::new(client_config(ca_file)?);
    *CONNECTOR.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(connector);
    Ok(())
}

/// The TLS connector every database connection is made with (it only speaks TLS when the
/// connection's mode asks for it).
pub fn connector() -> MakeRustlsConnect {
    if let Some(connector) = CONNECTOR.read().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
        return connector.clone();
    }
    let mut slot = CONNECTOR.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert_with(|| MakeRustlsConnect::new(client_config(None).expect("Mozilla's roots load"))).clone()
}

/// Advice for a connection error caused by the database's certificate, if that is its cause:
/// why rustls refused it, and what to set.
pub fn certificate_advice(err: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        // tokio-rustls reports rustls errors inside an io::Error, whose `source` skips them.
        let inner =
            cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &dyn std::error::Error);
        let refused =
            [Some(cause), inner].into_iter().flatten().find_map(|e| match e.downcast_ref::<rustls::Error>() {
                Some(refused @ rustls::Error::InvalidCertificate(_)) => Some(refused),
                _ => None,
            });
        if let Some(refused) = refused {
            return Some(format!(
                "the database server's TLS certificate was not accepted ({refused}): set PALISADE_DATABASE_CA_FILE \
                 to the PEM file of the certificate authority that signed it, and connect by a name or address \
                 the certificate carries"
            ));
        }
        source = cause.source();
    }
    None
}

/// A CA file that holds at least one PEM certificate: its text and its certificates. `setting`
/// and `whose` name the configuration key and the server it vouches for, in errors.
pub fn read_ca_file(
    path: &Path,
    setting: &str,
    whose: &str,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TrustError> {
    let unusable = |why: String| {
        TrustError(format!(
            "the CA file {} ({setting}) {why}: give the PEM file of the certificate authority that signed {whose} \
             certificate",
            path.display()
        ))
    };
    let text = std::fs::read(path).map_err(|err| unusable(format!("cannot be read ({err})")))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unusable(format!("is not valid PEM ({err})")))?;
    if certificates.is_empty() {
        return Err(unusable("holds no certificate".into()));
    }
    Ok((text, certificates))
}

fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TrustError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let (_, certificates) = read_ca_file(path, "PALISADE_DATABASE_CA_FILE", "the database server's")?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|err| TrustError(format!("{} holds an unusable certificate ({err})", path.display())))?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TrustError(format!("TLS setup failed: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> SslMode {
        policy_mode(&url.parse().unwrap())
    }

    #[test]
    fn other_machines_get_verified_tls_unless_the_url_turns_it_off() {
        assert_eq!(mode("postgres://app@db.internal/palisade"), SslMode::Require);
        assert_eq!(mode("postgres://app@db.internal/palisade?sslmode=prefer"), SslMode::Require);
        assert_eq!(mode("postgres://app@10.0.0.5/palisade?sslmode=require"), SslMode::Require);
        assert_eq!(mode("postgres://app@db.internal/palisade?sslmode=disable"), SslMode::Disable);
        // One remote host among local ones is enough.
        assert_eq!(mode("host=/run/postgresql,db.internal user=app"), SslMode::Require);
        assert_eq!(mode("host=127.0.0.1,10.1.1.1 user=app"), SslMode::Require);
        // The address dialled decides, not the name the certificate is checked against.
        assert_eq!(mode("host=localhost hostaddr=10.0.0.5 user=app"), SslMode::Require);
    }

    #[test]
    fn this_machine_goes_without_tls_unless_the_url_asks_for_it() {
        assert_eq!(mode("postgres://app@localhost/palisade"), SslMode::Disable);
        assert_eq!(mode("postgres://app@127.0.0.1:5433/palisade"), SslMode::Disable);
        assert_eq!(mode("postgres://app@[::1]/palisade"), SslMode::Disable);
        assert_eq!(mode("host=/run/postgresql,127.0.0.2 user=app"), SslMode::Disable);
        assert_eq!(mode("host=db.local hostaddr=127.0.0.1 user=app"), SslMode::Require, "a name is not proof");
        assert_eq!(mode("postgres://app@localhost/palisade?sslmode=require"), SslMode::Require);
        assert!(!is_local(&tokio_postgres::Config::new()), "no host is not this machine");
        assert_eq!(with_policy("postgres://app@db.internal/x".parse().unwrap()).get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("palisade-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = trust(Some(&dir.join("missing.pem"))).unwrap_err().to_string();
        assert!(missing.contains("cannot be read") && missing.contains("PALISADE_DATABASE_CA_FILE"), "{missing}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let none = trust(Some(&empty)).unwrap_err().to_string();
        assert!(none.contains("holds no certificate"), "{none}");
        std::fs::remove_dir_all(&dir).unwrap();
        trust(None).unwrap();
    }
}
