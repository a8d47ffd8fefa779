//! Transport security against the real binary: HTTPS by default (a self-signed certificate
//! announced with its fingerprint), TLS 1.1 and older refused, HSTS on every answer, and a
//! changed certificate served without a restart.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, scratch_dir};

/// Accepts any certificate (signatures still checked) and remembers the one presented: these
/// tests are about which certificate the server serves, not about trust.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// GET `path` over TLS: (SHA-256 of the served certificate, the raw HTTP answer).
async fn get_over_tls(base: &str, path: &str) -> (String, String) {
    let addr = base.strip_prefix("https://").unwrap();
    let recorder = Arc::new(Recorder::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let cert = recorder.0.lock().unwrap().clone().expect("a certificate");
    (hex(&Sha256::digest(&cert)), String::from_utf8_lossy(&answer).into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A certificate for localhost: (PEM certificate, PEM key, SHA-256 of the DER).
fn certificate(name: &str) -> (String, String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), hex(&Sha256::digest(cert.der())))
}

/// `openssl s_client` forcing one protocol version; true when a handshake completed.
fn openssl_handshake(base: &str, version_flag: &str) -> bool {
    let addr = base.strip_prefix("https://").unwrap();
    // Debian's OpenSSL refuses TLS 1.1 itself at its default security level: lower it, so a
    // refusal can only come from the server.
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            version_flag,
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (apt-get install openssl)");
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)")
}

#[tokio::test]
async fn https_is_the_default_with_a_self_signed_certificate_and_old_tls_is_refused() {
    let data_dir = scratch_dir("tls-default");
    let dir = data_dir.display().to_string();
    let server = Server::start_tls(&[("PALISADE_DATA_DIR", dir.as_str()), ("PALISADE_RATE_LIMITS", "off")]);
    assert!(server.base_url.starts_with("https://"));
    let (fingerprint, answer) = get_over_tls(&server.base_url, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_lowercase().contains("strict-transport-security: max-age=31536000"), "{answer}");
    // The fingerprint is announced, and the key is readable only by the server's user.
    assert!(server.output().contains(&fingerprint), "fingerprint {fingerprint} announced: {}", server.output());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data_dir.join("tls/self-signed.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    assert!(openssl_handshake(&server.base_url, "-tls1_2"), "TLS 1.2 works (the probe itself is sound)");
    assert!(openssl_handshake(&server.base_url, "-tls1_3"), "TLS 1.3 works");
    assert!(!openssl_handshake(&server.base_url, "-tls1_1"), "TLS 1.1 must be refused");
    assert!(!openssl_handshake(&server.base_url, "-tls1"), "TLS 1.0 must be refused");
    // No plaintext on the TLS port.
    let plain = reqwest::get(server.base_url.replace("https://", "http://") + "/healthz").await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart() {
    let dir = scratch_dir("tls-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    let (cert, key, first) = certificate("first");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let (cert_env, key_env) = (cert_path.display().to_string(), key_path.display().to_string());
    let server = Server::start_tls(&[
        ("PALISADE_TLS_CERT_FILE", cert_env.as_str()),
        ("PALISADE_TLS_KEY_FILE", key_env.as_str()),
        ("PALISADE_RATE_LIMITS", "off"),
    ]);
    assert_eq!(get_over_tls(&server.base_url, "/healthz").await.0, first);

    // A renewal: the key first, then the certificate (the half-way state must not break serving).
    let (cert, key, second) = certificate("second");
    std::fs::write(&key_path, key).unwrap();
    let (during, answer) = get_over_tls(&server.base_url, "/healthz").await;
    assert!(during == first || during == second);
    assert!(answer.starts_with("HTTP/1.1 200"));
    std::fs::File::create(&cert_path).unwrap().write_all(cert.as_bytes()).unwrap();
    let started = Instant::now();
    loop {
        if get_over_tls(&server.base_url, "/healthz").await.0 == second {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "new certificate not served: {}", server.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.output().contains("TLS certificate reloaded"));
}
