//! Key providers: where wrapping keys live. A wrapping key never leaves its provider; the server
//! hands it a 32-byte data key to wrap (or a wrapped one to unwrap) and stores only the wrapped
//! form. Destroying a wrapping key makes everything under it unreadable (crypto-shredding).
//!
//! Two providers ship: `local` (a key-encryption-key file protecting a key-store file, see
//! `provider_local`) and `pkcs11` (an HSM; see `provider_pkcs11`). A cloud KMS plugs in by
//! implementing this trait with its Encrypt/Decrypt (AWS KMS, GCP KMS) or Vault Transit's
//! encrypt/decrypt calls: `wrap` and `unwrap` map one-to-one, `create_key` and `destroy_key` to
//! key creation and scheduled deletion.
//!
//! Calls may block (file locks, an HSM round trip): callers on an async runtime use
//! `spawn_blocking`. Providers are only hit on a data-key cache miss, never per request.

use zeroize::Zeroizing;

/// Why a provider could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider cannot be reached or used right now (HSM down, key store unreadable):
    /// requests that need keys fail closed with 503, and nothing is written in the clear.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// No wrapping key of that name (never created, or destroyed).
    #[error("key provider has no key {0:?}")]
    NoSuchKey(String),
    /// A wrapped value that does not unwrap under the named key and context.
    #[error("wrapped key is corrupt or belongs elsewhere")]
    Corrupt,
    /// The provider's configuration or files are wrong; the message says what to fix.
    #[error("{0}")]
    Config(String),
}

/// What a provider says about itself for key status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// `local` or `pkcs11`.
    pub kind: &'static str,
    /// A short, non-secret id of the current master key (local: fingerprint of the KEK file;
    /// pkcs11: the token label), so a reviewer can tell a rotation happened.
    pub master_key_id: String,
}

/// A place wrapping keys live. Names are `[a-z0-9_.-]{1,128}` (see `valid_key_name`).
pub trait KeyProvider: Send + Sync + 'static {
    fn info(&self) -> ProviderInfo;

    /// Creates a wrapping key named `name`; if it already exists, does nothing (two nodes may
    /// race to create an organization's first key).
    fn create_key(&self, name: &str) -> Result<(), ProviderError>;

    /// Whether a wrapping key named `name` exists.
    fn has_key(&self, name: &str) -> Result<bool, ProviderError>;

    /// Encrypts a 32-byte data key under wrapping key `name`, bound to `context`.
    fn wrap(&self, name: &str, data_key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, ProviderError>;

    /// Decrypts what `wrap` returned, with the same name and context.
    fn unwrap(&self, name: &str, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProviderError>;

    /// Destroys wrapping key `name` for good. Destroying a missing key is not an error.
    fn destroy_key(&self, name: &str) -> Result<(), ProviderError>;

    /// Replaces the provider's master key (the one protecting its own store). Returns whether
    /// this provider has such a key to rotate; an HSM rotates its own with its own tools.
    fn rotate_master(&self) -> Result<bool, ProviderError>;
}

/// Wrapping-key names: short, and safe as file keys and PKCS#11 labels.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}
