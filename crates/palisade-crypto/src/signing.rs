//! Ed25519 signing keys of the instance (audit checkpoints, access tokens). A private key is
//! kept only sealed (the app seals its seed under the instance's data key, bound to
//! [`sealing_context`]); its id is derived from the public key, so anyone holding the public key
//! can tell which key signed.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;

/// A key pair able to sign.
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

/// What a sealed private key is bound to: its key id (so a sealed key copied to another key's
/// row does not open).
pub fn sealing_context(key_id: &str) -> Vec<u8> {
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

    /// The key pair of a private key's 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(seed) }
    }

    /// The key pair of an opened (unsealed) private key, checked to be `key_id`: wrong length or
    /// another key's seed is `CryptoError::Open`.
    pub fn from_opened(key_id: &str, seed: &[u8]) -> Result<Self, CryptoError> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(seed.try_into().map_err(|_| CryptoError::Open)?);
        let pair = Self::from_seed(&seed);
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
    use crate::InstanceKey;
    use crate::envelope::DataKey;

    #[test]
    fn a_sealed_key_signs_after_opening_and_only_under_its_own_id() {
        let data_key = DataKey::new([7; 16], &[9; 32]);
        let pair = KeyPair::generate();
        let sealed = data_key.seal(pair.secret_seed().as_slice(), &sealing_context(&pair.key_id()));
        let opened = data_key.open(&sealed, &sealing_context(&pair.key_id())).unwrap();
        let opened = KeyPair::from_opened(&pair.key_id(), &opened).unwrap();
        assert_eq!(opened.public_key(), pair.public_key());
        let signature = opened.sign(b"checkpoint");
        assert!(verify(&pair.public_key(), b"checkpoint", &signature));
        assert!(!verify(&pair.public_key(), b"checkpoint!", &signature));
        assert!(!verify(&KeyPair::generate().public_key(), b"checkpoint", &signature));
        // Bound to its id: another key's context does not open it.
        assert!(data_key.open(&sealed, &sealing_context(&KeyPair::generate().key_id())).is_err());
        assert!(pair.key_id().starts_with("ed25519-") && pair.key_id().len() == 24);
    }

    #[test]
    fn an_opened_seed_must_be_the_named_key_and_32_bytes() {
        let pair = KeyPair::generate();
        let seed = pair.secret_seed();
        assert!(KeyPair::from_opened(&KeyPair::generate().key_id(), seed.as_slice()).is_err());
        assert!(KeyPair::from_opened(&pair.key_id(), &seed[..31]).is_err());
        assert!(KeyPair::from_opened(&pair.key_id(), &[seed.as_slice(), &[0]].concat()).is_err());
        assert_eq!(KeyPair::from_seed(&seed).key_id(), pair.key_id());
        assert_eq!(KeyPair::from_opened(&pair.key_id(), seed.as_slice()).unwrap().sign(b"m"), pair.sign(b"m"));
    }

    #[test]
    fn a_key_sealed_under_the_old_instance_key_still_opens() {
        // Keys stored before envelope encryption were sealed by `InstanceKey` with this context.
        let dir = tempfile::tempdir().unwrap();
        let instance = InstanceKey::load_or_create(&dir.path().join("instance.key")).unwrap();
        let pair = KeyPair::generate();
        let legacy = instance.seal(pair.secret_seed().as_slice(), &sealing_context(&pair.key_id()));
        let opened = instance.open(&legacy, &sealing_context(&pair.key_id())).unwrap();
        assert_eq!(KeyPair::from_opened(&pair.key_id(), &opened).unwrap().public_key(), pair.public_key());
    }
}
