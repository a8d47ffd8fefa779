//! HTTPS: a rustls server configuration (TLS 1.2 and 1.3 only, and rustls offers only AEAD
//! suites) whose certificate can change without a restart. With no certificate configured, a
//! self-signed one for localhost is made once in `<data_dir>/tls/` (rcgen) and its SHA-256
//! fingerprint printed, so people can pin it. Configured PEM files are watched and a changed pair
//! is served to the next handshake; a pair that does not load is logged and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by us for localhost (not something an operator configured).
    pub self_signed: bool,
}

/// The certificate every new handshake gets; replaced in place on reload.
#[derive(Debug)]
pub struct ReloadingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key; errors name the file and what is wrong.
pub fn load(files: &CertificateFiles) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the TLS certificate {} is not PEM", files.cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "the TLS certificate {} holds no certificate", files.cert.display());
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!("reading the TLS private key {} (PEM: PKCS#8, PKCS#1 or SEC1)", files.key.display())
    })?;
    CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!("the TLS key {} does not fit the certificate {}", files.key.display(), files.cert.display())
    })
}

/// SHA-256 of the leaf certificate, as `AB:CD:…` (what browsers show).
pub fn fingerprint(key: &CertifiedKey) -> String {
    let digest = Sha256::digest(key.cert.first().map(|c| c.as_ref()).unwrap_or_default());
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The self-signed certificate for localhost in `dir`, made (0600 key) if missing or due to
/// expire within 30 days. Valid for `localhost`, `127.0.0.1` and `::1`, one year.
pub fn ensure_self_signed(dir: &Path) -> Result<CertificateFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let files =
        CertificateFiles { cert: dir.join("self-signed.crt"), key: dir.join("self-signed.key"), self_signed: true };
    let fresh_enough = std::fs::metadata(&files.cert)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|made| SystemTime::now().duration_since(made).ok())
        .is_some_and(|age| age < Duration::from_secs(335 * 24 * 3600));
    if fresh_enough && files.key.exists() && load(&files).is_ok() {
        return Ok(files);
    }
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])
            .context("certificate parameters")?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Palisade self-signed (localhost)");
    let key_pair = rcgen::KeyPair::generate().context("generating the TLS key")?;
    let cert = params.self_signed(&key_pair).context("signing the self-signed certificate")?;
    write_private(&files.key, key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem()).with_context(|| format!("writing {}", files.cert.display()))?;
    Ok(files)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// A server configuration over `files`, and the handle that swaps the certificate.
pub fn server_config(files: &CertificateFiles) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadingCertificate>)> {
    let resolver = Arc::new(ReloadingCertificate { current: RwLock::new(Arc::new(load(files)?)) });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

impl ReloadingCertificate {
    pub fn current_fingerprint(&self) -> String {
        fingerprint(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Watches the files (modification times, every `every`) and serves a changed pair to new
    /// handshakes once both files load and fit together.
    pub async fn watch(self: Arc<Self>, files: CertificateFiles, every: Duration) {
        let stamp = |files: &CertificateFiles| {
            let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            (time(&files.cert), time(&files.key))
        };
        let mut seen = stamp(&files);
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let now = stamp(&files);
            if now == seen {
                continue;
            }
            match load(&files) {
                Ok(key) => {
                    let fingerprint = fingerprint(&key);
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                    seen = now;
                    tracing::info!(%fingerprint, cert = %files.cert.display(), "TLS certificate reloaded");
                }
                // Half-written files (a renewal in progress) fail here; the next tick retries.
                Err(err) => tracing::warn!(
                    error = format!("{err:#}"),
                    "new TLS certificate not loaded yet; still serving the old one"
                ),
            }
        }
    }
}
