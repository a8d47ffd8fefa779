//! Values encrypted under a data key (envelope encryption, E2/E3). A data key is 256 random
//! bits, stored only wrapped by its owner's wrapping key in a key provider; this module is the
//! format of what it encrypts:
//!
//! `[0xE1] [16-byte data-key id] [12-byte nonce] [AES-256-GCM ciphertext ‖ 16-byte tag]`
//!
//! The version byte and key id are authenticated along with the caller's context (organization,
//! table, column, row), so a ciphertext moved to another row or tenant, or relabelled with
//! another key id, does not open. The key id lets a reader find the right key, which is what
//! keeps both key versions readable while a rotation re-encrypts.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::CryptoError;

/// Version byte of the envelope format (distinct from the instance-key format's 1).
pub const ENVELOPE_V1: u8 = 0xE1;
const HEADER: usize = 1 + 16;
const NONCE: usize = 12;
const TAG: usize = 16;

/// A data key in memory, ready to encrypt (the key bytes live only inside the cipher).
pub struct DataKey {
    id: [u8; 16],
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &hex(&self.id)).finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 256 fresh random bits for a new data key.
pub fn fresh_key_material() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

/// The id of the data key that sealed `sealed`, if it is an envelope at all.
pub fn key_id_of(sealed: &[u8]) -> Option<[u8; 16]> {
    if sealed.len() < HEADER + NONCE + TAG || sealed[0] != ENVELOPE_V1 {
        return None;
    }
    sealed[1..HEADER].try_into().ok()
}

/// Whether `bytes` has the shape of an envelope (what `controls check` samples for E2).
pub fn is_envelope(bytes: &[u8]) -> bool {
    key_id_of(bytes).is_some()
}

impl DataKey {
    pub fn new(id: [u8; 16], key: &[u8; 32]) -> Self {
        Self { id, cipher: Aes256Gcm::new(key.into()) }
    }

    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    fn aad(&self, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(HEADER + context.len());
        aad.push(ENVELOPE_V1);
        aad.extend_from_slice(&self.id);
        aad.extend_from_slice(context);
        aad
    }

    /// Encrypts `plaintext` bound to `context` (e.g. `org_…|secrets|value|sec_…`).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &self.aad(context) })
            .expect("AES-GCM encryption of a value under 64 GiB cannot fail");
        let mut out = Vec::with_capacity(HEADER + NONCE + sealed.len());
        out.push(ENVELOPE_V1);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts an envelope this key sealed with the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if key_id_of(sealed) != Some(self.id) {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed[HEADER..].split_at(NONCE);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: &self.aad(context) })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_only_with_its_key_and_context() {
        let key = DataKey::new([1; 16], &fresh_key_material());
        let sealed = key.seal(b"4111 1111 1111 1111", b"org_a|records|sealed|rec_1");
        assert!(is_envelope(&sealed));
        assert_eq!(key_id_of(&sealed), Some([1; 16]));
        assert_eq!(&*key.open(&sealed, b"org_a|records|sealed|rec_1").unwrap(), b"4111 1111 1111 1111");
        // Another row, another tenant, another column: refused.
        for context in [&b"org_a|records|sealed|rec_2"[..], b"org_b|records|sealed|rec_1", b"org_a|secrets|value|rec_1"]
        {
            assert!(key.open(&sealed, context).is_err());
        }
        // Another key, even relabelled with this key's id, does not open it.
        let other = DataKey::new([2; 16], &fresh_key_material());
        assert!(other.open(&sealed, b"org_a|records|sealed|rec_1").is_err());
        let impostor = DataKey::new([1; 16], &fresh_key_material());
        assert!(impostor.open(&sealed, b"org_a|records|sealed|rec_1").is_err());
        // A header pointing at another key id is refused before any decryption.
        let mut relabelled = sealed.clone();
        relabelled[1] = 2;
        assert!(other.open(&relabelled, b"org_a|records|sealed|rec_1").is_err());
        // Tampering and truncation.
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"org_a|records|sealed|rec_1").is_err());
        assert!(key.open(&sealed[..20], b"org_a|records|sealed|rec_1").is_err());
        assert!(!is_envelope(b"plain text that is long enough to be mistaken for a header"));
        // Same plaintext twice: different ciphertexts (fresh nonces).
        assert_ne!(key.seal(b"x", b"c"), key.seal(b"x", b"c"));
    }
}
