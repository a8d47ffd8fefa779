//! Sealing small secrets (TOTP seeds, later connector tokens) with AES-256-GCM under an instance
//! key kept in a file beside the data (never in the database). The associated data binds each
//! ciphertext to its owner and purpose, so a sealed value copied to another row does not open.
//! The Encryption work moves the key under a KMS/HSM provider; the sealed format names its
//! version so old values stay readable.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

pub mod envelope;
pub mod provider;
pub mod provider_local;
pub mod provider_pkcs11;
pub mod signing;

/// Version byte of the sealed format: `[1] [12-byte nonce] [ciphertext + 16-byte tag]`.
const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("instance key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error("the sealed value is corrupt or belongs elsewhere")]
    Open,
    #[error("{0}")]
    Key(String),
}

/// The instance key: 256 random bits.
pub struct InstanceKey {
    cipher: Aes256Gcm,
    /// A key for deterministic MACs, derived from the instance key (never the key itself).
    mac_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceKey(<redacted>)")
    }
}

impl InstanceKey {
    /// Reads the key file, creating it (mode 0600) with a fresh key if it does not exist.
    /// A file of the wrong size or with loose permissions is refused: nothing is rewritten.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |why: String| CryptoError::KeyFile { path: path.display().to_string(), why };
        if !path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(key.as_mut());
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            file.write_all(key.as_ref()).map_err(|e| err(e.to_string()))?;
            file.sync_all().map_err(|e| err(e.to_string()))?;
        }
        let mode = fs::metadata(path).map_err(|e| err(e.to_string()))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!("mode {mode:o} lets other users read it; chmod 600")));
        }
        let bytes = Zeroizing::new(fs::read(path).map_err(|e| err(e.to_string()))?);
        if bytes.len() != 32 {
            return Err(err(format!("holds {} bytes, not 32: restore the original file", bytes.len())));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| err("unusable key".into()))?;
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).map_err(|_| err("unusable key".into()))?;
        derive.update(b"palisade-instance-mac-v1");
        let mac_key = Zeroizing::new(<[u8; 32]>::from(derive.finalize().into_bytes()));
        Ok(Self { cipher, mac_key })
    }

    /// HMAC-SHA256 of `data` under a key derived from the instance key, bound to `context`:
    /// the same input always gives the same value, which nobody without the key can compute
    /// (e.g. a stable decoy credential id for an address that has none).
    pub fn mac(&self, context: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key.as_ref()).expect("HMAC takes any key length");
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. `totp|usr_…`).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context })
            .expect("AES-GCM encryption of a small value cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value sealed with the same key and context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + 12 + 16 || sealed[0] != FORMAT_V1 {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed[1..].split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: context })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

/// The key with which the server proves an access token's session to the database (0037): the
/// database holds it too and checks HMAC-SHA-256(key, session id), so SQL that merely knows a
/// session's id cannot act as that session. Read once at start through the sign-in login.
pub struct BearerKey(Zeroizing<[u8; 32]>);

impl BearerKey {
    /// The key as the database stores it; anything but 32 bytes is refused.
    pub fn from_stored(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Key(format!("the bearer key holds {} bytes, not 32", bytes.len())))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// HMAC-SHA-256 of the session id's 16 bytes, as `palisade.valid_session` recomputes it.
    pub fn mac(&self, session: &[u8; 16]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("HMAC takes any key length");
        mac.update(session);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for BearerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.key");
        let key = InstanceKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = key.seal(b"seed", b"totp|usr_a");
        assert_eq!(&*key.open(&sealed, b"totp|usr_a").unwrap(), b"seed");
        assert!(key.open(&sealed, b"totp|usr_b").is_err(), "bound to its owner");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"totp|usr_a").is_err());
        assert!(key.open(&sealed[..10], b"totp|usr_a").is_err());
        // The same file gives the same key; another file does not.
        assert!(InstanceKey::load_or_create(&path).unwrap().open(&sealed, b"totp|usr_a").is_ok());
        let other = InstanceKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&sealed, b"totp|usr_a").is_err());
    }

    #[test]
    fn a_wrong_or_exposed_key_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        fs::write(&short, b"too short").unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(InstanceKey::load_or_create(&short).unwrap_err().to_string().contains("not 32"));
        assert_eq!(fs::read(&short).unwrap(), b"too short", "nothing rewritten");
        let open = dir.path().join("open.key");
        fs::write(&open, [7u8; 32]).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(InstanceKey::load_or_create(&open).unwrap_err().to_string().contains("chmod 600"));
    }
}
