//! Access tokens: JWTs signed with Ed25519 (`alg: EdDSA`, `typ: at+jwt` as in RFC 9068).
//!
//! The token format is `jsonwebtoken`'s; its one crypto backend is the provider below, which
//! knows Ed25519 (ed25519-dalek) and nothing else. So no header can talk verification into
//! `none`, HMAC or RSA: every other algorithm fails before a key is even looked at, and the
//! checks here also require `alg`, `typ` and a published `kid` before any signature work.
//! `exp` is checked against the injected clock (not the system clock), so tests move time.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `typ` header of an access token. Nothing else the server issues carries it (challenge,
/// refresh and email tokens are opaque strings, audit checkpoints are not JWTs).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What an access token says. `sub` and `sid` are typed ids in text form (`usr_…`, `ses_…`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    /// Authentication methods (RFC 8176): `pwd`, `otp`, `mfa`, `hwk`, `user`.
    pub amr: Vec<String>,
    pub auth_time: i64,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a presented token was refused. Callers answer all of them the same way (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("not a well-formed access token")]
    Malformed,
    #[error("the token's header is not that of an access token")]
    WrongHeader,
    #[error("signed by a key that is not published")]
    UnknownKey,
    #[error("bad signature, issuer or audience")]
    Invalid,
    #[error("expired")]
    Expired,
}

static INSTALL: Once = Once::new();

/// Makes the Ed25519-only provider jsonwebtoken's backend for this process. Idempotent.
pub fn install_provider() {
    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: ed25519_signer,
        verifier_factory: ed25519_verifier,
        key_utils: KeyUtils::new_unimplemented(),
    };
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first, which nothing in this build does.
        let _ = PROVIDER.install_default();
    });
}

struct Ed25519Signer(SigningKey);
struct Ed25519Verifier(VerifyingKey);

/// Expanding an Ed25519 seed into a signing key costs a scalar multiplication, and every token
/// for weeks is signed with the same key: the provider keeps the last one it expanded.
static LAST_SIGNING_KEY: Mutex<Option<(Zeroizing<[u8; 32]>, SigningKey)>> = Mutex::new(None);

fn ed25519_signer(algorithm: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let seed: &[u8; 32] = key.as_bytes().try_into().map_err(|_| ErrorKind::InvalidEddsaKey)?;
    let mut last = LAST_SIGNING_KEY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let signing = match last.as_ref() {
        Some((cached, signing)) if cached.as_slice() == seed.as_slice() => signing.clone(),
        _ => {
            let signing = SigningKey::from_bytes(seed);
            *last = Some((Zeroizing::new(*seed), signing.clone()));
            signing
        }
    };
    Ok(Box::new(Ed25519Signer(signing)))
}

fn ed25519_verifier(algorithm: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let public: &[u8; 32] = key.try_get_as_bytes()?.try_into().map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(Ed25519Verifier(VerifyingKey::from_bytes(public).map_err(|_| ErrorKind::InvalidEddsaKey)?)))
}

impl signature::Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(ed25519_dalek::Signer::sign(&self.0, message).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

impl signature::Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        // Strict verification: no malleable or small-order signatures.
        self.0.verify_strict(message, &Signature::from_slice(signature)?)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// Signs access tokens with one key.
pub struct AccessTokenSigner {
    kid: String,
    key: EncodingKey,
}

impl std::fmt::Debug for AccessTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl AccessTokenSigner {
    /// `seed` is the Ed25519 private key (32 bytes); it is copied into the encoding key only.
    pub fn new(kid: String, seed: Zeroizing<[u8; 32]>) -> Self {
        install_provider();
        Self { kid, key: EncodingKey::from_ed_der(seed.as_slice()) }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// An access token carrying `claims`.
    pub fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs any header and payload with this key. For tokens of another kind, and for tests
    /// that show such tokens are refused as access tokens.
    pub fn sign_with_header<T: Serialize>(&self, header: &Header, payload: &T) -> String {
        // Serialising plain structs and signing with a valid Ed25519 key cannot fail.
        jsonwebtoken::encode(header, payload, &self.key).expect("Ed25519 signing of a serialisable payload")
    }
}

/// The published verification keys (by `kid`) and what a token must say to be accepted.
pub struct AccessTokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl AccessTokenVerifier {
    /// `keys` are (kid, Ed25519 public key) pairs; tokens must name `issuer` and `audience`.
    pub fn new(keys: impl IntoIterator<Item = (String, [u8; 32])>, issuer: &str, audience: &str) -> Self {
        install_provider();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is ours to check (injected clock); see `verify`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let keys = keys.into_iter().map(|(kid, public)| (kid, DecodingKey::from_ed_der(&public))).collect();
        Self { keys, validation }
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The claims of a valid access token at `now` (Unix seconds). The header is checked before
    /// any signature work: `alg` must be EdDSA, `typ` must be `at+jwt`, `kid` must be published.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenRejected> {
        if token.len() > 4096 || token.split('.').count() != 3 {
            return Err(TokenRejected::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejected::Malformed)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(TokenRejected::WrongHeader);
        }
        let key = header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(TokenRejected::UnknownKey)?;
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(|err| match err.kind() {
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    TokenRejected::Malformed
                }
                _ => TokenRejected::Invalid,
            })?;
        if data.claims.exp <= now {
            return Err(TokenRejected::Expired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn pair() -> (AccessTokenSigner, [u8; 32]) {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = key.verifying_key().to_bytes();
        (AccessTokenSigner::new("k1".into(), Zeroizing::new(key.to_bytes())), public)
    }

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://p.example".into(),
            aud: "palisade".into(),
            sub: "usr_x".into(),
            sid: "ses_x".into(),
            amr: vec!["pwd".into()],
            auth_time: 1,
            iat: 1,
            exp,
            jti: "j".into(),
        }
    }

    fn verifier(public: [u8; 32]) -> AccessTokenVerifier {
        AccessTokenVerifier::new([("k1".to_owned(), public)], "https://p.example", "palisade")
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let (signer, public) = pair();
        let token = signer.sign(&claims(100));
        assert_eq!(verifier(public).verify(&token, 99), Ok(claims(100)));
        assert_eq!(verifier(public).verify(&token, 100), Err(TokenRejected::Expired));
    }

    #[test]
    fn tampering_another_key_alg_none_and_hmac_confusion_are_refused() {
        let (signer, public) = pair();
        let token = signer.sign(&claims(100));
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(100);
        forged.sub = "usr_admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(verifier(public).verify(&tampered, 0), Err(TokenRejected::Invalid));

        let (other, _) = pair();
        assert_eq!(verifier(public).verify(&other.sign(&claims(100)), 0), Err(TokenRejected::Invalid));

        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#), parts[1]);
        assert!(verifier(public).verify(&none, 0).is_err());
        let hs = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(verifier(public).verify(&hs, 0), Err(TokenRejected::WrongHeader));
    }

    #[test]
    fn only_at_jwt_typed_tokens_are_access_tokens() {
        let (signer, public) = pair();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        header.typ = Some("JWT".into());
        let token = signer.sign_with_header(&header, &claims(100));
        assert_eq!(verifier(public).verify(&token, 0), Err(TokenRejected::WrongHeader));
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let (signer, public) = pair();
        let mut other = claims(100);
        other.aud = "someone-else".into();
        assert_eq!(verifier(public).verify(&signer.sign(&other), 0), Err(TokenRejected::Invalid));
        let mut other = claims(100);
        other.iss = "https://evil.example".into();
        assert_eq!(verifier(public).verify(&signer.sign(&other), 0), Err(TokenRejected::Invalid));
    }
}
