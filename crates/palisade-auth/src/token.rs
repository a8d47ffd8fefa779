//! Opaque session tokens: 256 random bits, shown to the client once, stored only as SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core::{Randomness, SessionTokenHash};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The recognisable prefix of a Palisade session token (so a leaked one can be spotted by scanners).
pub const SESSION_TOKEN_PREFIX: &str = "pss_";

/// A freshly minted token and the hash to store.
pub struct SessionToken {
    pub token: SecretString,
    pub hash: SessionTokenHash,
}

/// Prefix of email verification tokens.
pub const VERIFY_TOKEN_PREFIX: &str = "pev_";
/// Prefix of password reset tokens.
pub const RESET_TOKEN_PREFIX: &str = "prt_";
/// Prefix of refresh tokens (opaque, single use: each use returns the next one).
pub const REFRESH_TOKEN_PREFIX: &str = "prf_";
/// Prefix of change-of-address tokens.
pub const CHANGE_EMAIL_TOKEN_PREFIX: &str = "pce_";

impl SessionToken {
    pub fn mint(random: &dyn Randomness) -> Self {
        Self::mint_prefixed(random, SESSION_TOKEN_PREFIX)
    }

    /// A 256-bit token with a recognisable prefix (email links use their own prefixes).
    pub fn mint_prefixed(random: &dyn Randomness, prefix: &str) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        random.fill(bytes.as_mut());
        let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        let hash = hash_token(&token);
        Self { token: token.into(), hash }
    }

    pub fn expose(&self) -> &str {
        self.token.expose_secret()
    }
}

/// Prefix of invitation tokens. The token carries its organization's id (first 16 bytes), so the
/// database can look it up under that tenant's row-level security.
pub const INVITATION_TOKEN_PREFIX: &str = "pin_";

/// Mints an invitation token for organization `org` (a UUID).
pub fn mint_invitation(random: &dyn Randomness, org: uuid_bytes::Bytes) -> SessionToken {
    let mut bytes = zeroize::Zeroizing::new([0u8; 48]);
    bytes[..16].copy_from_slice(&org);
    random.fill(&mut bytes[16..]);
    let token = format!("{INVITATION_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let hash = hash_token(&token);
    SessionToken { token: token.into(), hash }
}

/// The organization an invitation token names, if it is well formed.
pub fn invitation_org(token: &str) -> Option<uuid_bytes::Bytes> {
    let encoded = token.strip_prefix(INVITATION_TOKEN_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    (bytes.len() == 48).then(|| bytes[..16].try_into().ok()).flatten()
}

/// Raw UUID bytes (the auth crate needs no UUID type for this).
pub mod uuid_bytes {
    pub type Bytes = [u8; 16];
}

/// The stored form of a presented token. Any string hashes; only a real token's hash matches a row.
pub fn hash_token(presented: &str) -> SessionTokenHash {
    SessionTokenHash(Sha256::digest(presented.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::SystemRandomness;

    #[test]
    fn tokens_are_prefixed_random_and_hash_consistently() {
        let a = SessionToken::mint(&SystemRandomness);
        let b = SessionToken::mint(&SystemRandomness);
        assert!(a.expose().starts_with(SESSION_TOKEN_PREFIX));
        assert_eq!(a.expose().len(), SESSION_TOKEN_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(hash_token(a.expose()), a.hash);
        assert_ne!(hash_token(b.expose()), a.hash);
    }
}
