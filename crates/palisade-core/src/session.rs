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

/// What a caller proves about their session, passed to the database's session check
/// (`palisade.valid_session`) in the same transaction as the work:
/// - `Cookie`: the SHA-256 of an opaque session token (the browser cookie); the database finds
///   the session by this hash, so only someone holding the token can name it.
/// - `Access`: the session named by a signed access token, whose Ed25519 signature, issuer,
///   audience and expiry this node has already checked, with `mac` = HMAC-SHA-256 of the session
///   id under the bearer key (0037), which the database checks: knowing a session's id is not
///   enough to act as it. The database still decides whether that session is alive (revoked,
///   idle, past its lifetime, member cut-off), on every request.
/// - `ApiKey`: the keyed hash of an organization's API key and the address it was presented
///   from. It has no session: it enters only its own organization (`enter_tenant_key`), with its
///   scopes cut down to its creator's current permissions; anything needing a session refuses it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SessionProof {
    Cookie(SessionTokenHash),
    Access { session: crate::SessionId, mac: [u8; 32] },
    ApiKey { hash: SessionTokenHash, ip: Option<std::net::IpAddr> },
}

impl SessionProof {
    /// The proof as `valid_session` takes it: 32 bytes (a token hash) or 48 (a session id and
    /// its MAC). An API key has no session: it gives an empty proof, which no session matches.
    pub fn to_db(&self) -> Vec<u8> {
        match self {
            SessionProof::Cookie(hash) => hash.0.to_vec(),
            SessionProof::Access { session, mac } => [session.as_uuid().as_bytes().as_slice(), mac].concat(),
            SessionProof::ApiKey { .. } => Vec::new(),
        }
    }
}

impl std::fmt::Debug for SessionProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionProof::Cookie(_) => f.write_str("SessionProof::Cookie(<redacted>)"),
            SessionProof::Access { session, .. } => write!(f, "SessionProof::Access({session}, <mac redacted>)"),
            SessionProof::ApiKey { ip, .. } => write!(f, "SessionProof::ApiKey(<redacted> from {ip:?})"),
        }
    }
}
