//! The proof a caller presents: the SHA-256 of their bearer token, checked inside the database.

/// SHA-256 of a session token. The token itself is never stored; this hash is what the database
/// looks up, in the same transaction as the work the caller asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionTokenHash(pub [u8; 32]);

impl std::fmt::Debug for SessionTokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionTokenHash(<redacted>)")
    }
}
