//! Ed25519 signing keys of the instance (audit checkpoints; later access tokens). A private key
//! is kept only sealed under the instance key; its id is derived from the public key, so anyone
//! holding the public key can tell which key signed.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{CryptoError, InstanceKey};

/// A key pair able to sign.
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

fn context(key_id: &str) -> Vec<u8> {
    format!("signing-key|{key_id}").into_bytes()
}

/// The id of a public key: `ed25519-` and the first 16 hex digits of its SHA-256.
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    format!("ed25519-{}", hex_prefix(&Sha256::digest(public_key)[..8]))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyPair {
    pub fn generate() -> Self {
        Self { signing: SigningKey::generate(&mut rand::rngs::OsRng) }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn key_id(&self) -> String {
        key_id_of(&self.public_key())
    }

    /// The private key's 32-byte seed, for a signer that needs it as bytes (JWT encoding keys).
    pub fn secret_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The private key sealed under the instance key, bound to this key's id.
    pub fn seal(&self, instance: &InstanceKey) -> Vec<u8> {
        let secret = Zeroizing::new(self.signing.to_bytes());
        instance.seal(secret.as_slice(), &context(&self.key_id()))
    }

    /// Opens a sealed private key and checks it belongs to `key_id`.
    pub fn open(instance: &InstanceKey, key_id: &str, sealed: &[u8]) -> Result<Self, CryptoError> {
        let plain = instance.open(sealed, &context(key_id))?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Open)?;
        let pair = Self { signing: SigningKey::from_bytes(&bytes) };
        if pair.key_id() == key_id { Ok(pair) } else { Err(CryptoError::Open) }
    }
}

/// Checks an Ed25519 signature by a public key.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (<[u8; 32]>::try_from(public_key), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else { return false };
    key.verify(message, &Signature::from_bytes(&signature)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_signs_after_opening_and_only_under_its_own_id() {
        let dir = tempfile::tempdir().unwrap();
        let instance = InstanceKey::load_or_create(&dir.path().join("instance.key")).unwrap();
        let pair = KeyPair::generate();
        let sealed = pair.seal(&instance);
        let opened = KeyPair::open(&instance, &pair.key_id(), &sealed).unwrap();
        let signature = opened.sign(b"checkpoint");
        assert!(verify(&pair.public_key(), b"checkpoint", &signature));
        assert!(!verify(&pair.public_key(), b"checkpoint!", &signature));
        assert!(!verify(&KeyPair::generate().public_key(), b"checkpoint", &signature));
        assert!(KeyPair::open(&instance, &KeyPair::generate().key_id(), &sealed).is_err());
        assert!(pair.key_id().starts_with("ed25519-") && pair.key_id().len() == 24);
    }
}
