//! Access-token signing keys on this node: which key signs, which keys verify (the JWKS), and
//! the cache of verified tokens.
//!
//! The database holds the keys; each node reloads them every second (`run_token_keys`), which is
//! also when a scheduled rotation happens (the first node to notice does it; the database
//! serialises them). A revoked key leaves the verifying set on the next reload, and a cached
//! token is only trusted while the key that signed it is still in that set: revocation wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use palisade_auth::jwt::{AccessClaims, AccessTokenSigner, AccessTokenVerifier, TokenRejected};
use palisade_core::{SessionId, UserId};
use palisade_crypto::signing::{KeyPair, sealing_context};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, Actor, RequestMeta};
use palisade_store::repo::tokens::{self, KEY_ROTATED_FLAG, NewKey, TokenKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{App, AppError};

/// The most verified tokens a node remembers; past it, expired entries go, then everything.
const CACHE_LIMIT: usize = 100_000;

/// A key in the published set (what `/.well-known/jwks.json` lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub kid: String,
    pub public_key: [u8; 32],
}

struct KeyState {
    signer: Option<Arc<AccessTokenSigner>>,
    /// When the signing key (as the database had it at the last reload) was made: a new key is
    /// generated and sealed only once this is a rotation period old.
    signer_created_at: Option<time::OffsetDateTime>,
    verifier: AccessTokenVerifier,
    published: Vec<PublishedKey>,
}

#[derive(Clone)]
struct CachedToken {
    session: SessionId,
    user: UserId,
    exp: i64,
    kid: String,
}

/// What a verified access token proves, for the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedAccess {
    pub session: SessionId,
    /// The token's subject (rate limits count per user).
    pub user: UserId,
}

/// This node's view of the token keys. See the module docs.
pub struct TokenKeys {
    issuer: String,
    audience: String,
    state: RwLock<Arc<KeyState>>,
    verified: Mutex<HashMap<[u8; 32], CachedToken>>,
}

impl TokenKeys {
    /// An empty set (no token verifies) until the first `reload_token_keys`.
    pub fn new(issuer: String, audience: String) -> Self {
        let verifier = AccessTokenVerifier::new([], &issuer, &audience);
        let state = KeyState { signer: None, signer_created_at: None, verifier, published: Vec::new() };
        Self { issuer, audience, state: RwLock::new(Arc::new(state)), verified: Mutex::default() }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    fn current(&self) -> Arc<KeyState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The keys that verify tokens now, newest first.
    pub fn published(&self) -> Vec<PublishedKey> {
        self.current().published.clone()
    }

    /// The key that signs new tokens (none before the first reload).
    pub fn signer(&self) -> Option<Arc<AccessTokenSigner>> {
        self.current().signer.clone()
    }

    /// Checks an access token at `now` (Unix seconds). A token seen before costs one SHA-256
    /// and a map lookup; a new one, an Ed25519 verification.
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedAccess, TokenRejected> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let state = self.current();
        let cached = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&digest).cloned();
        if let Some(hit) = cached {
            if hit.exp <= now {
                return Err(TokenRejected::Expired);
            }
            if state.verifier.knows(&hit.kid) {
                return Ok(VerifiedAccess { session: hit.session, user: hit.user });
            }
            return Err(TokenRejected::UnknownKey);
        }
        let claims = state.verifier.verify(token, now)?;
        let session: SessionId = claims.sid.parse().map_err(|_| TokenRejected::Invalid)?;
        let user: UserId = claims.sub.parse().map_err(|_| TokenRejected::Invalid)?;
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid).ok_or(TokenRejected::Malformed)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, entry| entry.exp > now);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(digest, CachedToken { session, user, exp: claims.exp, kid });
        Ok(VerifiedAccess { session, user })
    }

    fn install(&self, state: KeyState) {
        let published: std::collections::HashSet<String> = state.published.iter().map(|k| k.kid.clone()).collect();
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        // Entries signed by a key that left the set could never be used again; drop them now.
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, entry| published.contains(&entry.kid));
    }
}

impl App {
    /// How long after retirement a key stays published: the longest an access token it signed
    /// can live, plus a minute for nodes that have not reloaded yet.
    fn publish_grace(&self) -> time::Duration {
        self.policy.access_token_ttl + time::Duration::minutes(1)
    }

    /// A signing key's private part sealed under the instance's data key, bound to its id.
    pub(crate) async fn seal_signing_key(&self, pair: &KeyPair) -> Result<Vec<u8>, AppError> {
        self.instance_seal(pair.secret_seed().as_slice(), &sealing_context(&pair.key_id())).await
    }

    /// Opens a stored private key (sealed by `seal_signing_key`, or under the old instance key
    /// before envelope encryption) and checks that it is key `key_id`.
    pub(crate) async fn open_signing_key(&self, key_id: &str, sealed: &[u8]) -> Result<KeyPair, AppError> {
        let seed = self.instance_open(sealed, &sealing_context(key_id)).await?;
        KeyPair::from_opened(key_id, &seed)
            .map_err(|_| AppError::Internal(format!("the sealed private key of {key_id} is not that key")))
    }

    async fn new_token_key(&self) -> Result<NewKey, AppError> {
        let pair = KeyPair::generate();
        let sealed_private = self.seal_signing_key(&pair).await?;
        Ok(NewKey { key_id: pair.key_id(), public_key: pair.public_key(), sealed_private })
    }

    /// Reads the token keys from the database and makes them this node's. Creates the first key,
    /// or rotates one older than the rotation period, on the way.
    ///
    /// Sealing a new key and opening the signing key need the instance's data key (the key
    /// provider). Without it the published set is still reloaded, so a revocation always takes
    /// effect: only the rotation waits, and if the signing key is new to this node and cannot be
    /// opened, this node signs nothing until it can (an error is returned).
    pub async fn reload_token_keys(&self) -> Result<(), AppError> {
        let now = self.clock.now();
        // The database decides (another node may have rotated since): a key is only offered when
        // this node last saw none, or one a rotation period old, not on every reload.
        let due = self
            .tokens
            .current()
            .signer_created_at
            .is_none_or(|created| created + self.policy.signing_key_rotation <= now);
        let candidate = if due {
            match self.new_token_key().await {
                Ok(key) => Some(key),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot seal a new access-token signing key; reloading without rotating");
                    None
                }
            }
        } else {
            None
        };
        // Rotating is the sign-in login's (0043); a node without it (a CLI command) only reads.
        // A failed rotation still reloads the published set, so a revocation takes effect.
        if let (Some(key), Some(sign_in)) = (candidate, &self.sign_in) {
            match self.rotate_token_key_when_due(sign_in, key, now).await {
                Ok(true) => tracing::info!("rotated the access-token signing key (schedule)"),
                Ok(false) => {}
                // With no key at all yet (a new instance's first start) there is nothing to sign with.
                Err(err) if self.tokens.signer().is_none() => return Err(err),
                Err(err) => tracing::warn!(error = %err, "rotating the access-token signing key failed; will retry"),
            }
        }
        let mut tx = Tx::anonymous();
        let keys = tokens::published_keys(&mut tx, now, self.publish_grace());
        let keys = tx.run(&self.db).await?.get(keys)?;
        let (state, signer) = self.key_state(&keys).await;
        self.tokens.install(state);
        signer
    }

    /// The scheduled rotation: `key` becomes the signing key unless another node rotated within
    /// the period. Whether it did.
    async fn rotate_token_key_when_due(
        &self,
        sign_in: &palisade_store::Db,
        key: NewKey,
        now: time::OffsetDateTime,
    ) -> Result<bool, AppError> {
        let mut tx = Tx::anonymous();
        let rotated = tokens::rotate_key(&mut tx, key, now, Some(self.policy.signing_key_rotation));
        audit::record_if_flag(
            &mut tx,
            self.audit("signing_key.rotated", &RequestMeta::default())
                .actor(Actor::None)
                .details(json!({"purpose": "token", "reason": "due"})),
            KEY_ROTATED_FLAG,
        );
        Ok(tx.run(sign_in).await?.get(rotated)?)
    }

    /// The node's key state for `keys`, and whether the signing key could be opened. A signing
    /// key this node already holds is not opened again.
    async fn key_state(&self, keys: &[TokenKey]) -> (KeyState, Result<(), AppError>) {
        let (signer, opened) = match keys.iter().find(|k| k.is_active()) {
            Some(active) => match self.tokens.signer().filter(|s| s.kid() == active.key_id) {
                Some(held) => (Some(held), Ok(())),
                None => match self.open_signing_key(&active.key_id, &active.sealed_private).await {
                    Ok(pair) => {
                        (Some(Arc::new(AccessTokenSigner::new(active.key_id.clone(), pair.secret_seed()))), Ok(()))
                    }
                    Err(err) => (None, Err(signing_key_unavailable(&active.key_id, err))),
                },
            },
            None => (None, Ok(())),
        };
        let published: Vec<PublishedKey> =
            keys.iter().map(|k| PublishedKey { kid: k.key_id.clone(), public_key: k.public_key }).collect();
        let verifier = AccessTokenVerifier::new(
            published.iter().map(|k| (k.kid.clone(), k.public_key)),
            &self.tokens.issuer,
            &self.tokens.audience,
        );
        let signer_created_at = keys.iter().find(|k| k.is_active()).map(|k| k.created_at);
        (KeyState { signer, signer_created_at, verifier, published }, opened)
    }

    /// Keeps this node's keys current: reloads the token keys (rotating when due) and the bearer
    /// key every `every`.
    pub async fn run_token_keys(self, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(err) = self.reload_token_keys().await {
                tracing::warn!(error = %err, "reloading the token signing keys failed; keeping the last ones");
            }
            // A node without the sign-in login (a CLI command) has no bearer key to keep current.
            if self.sign_in.is_some()
                && let Err(err) = self.load_bearer_key().await
            {
                tracing::warn!(error = %err, "reading the current bearer key failed; keeping the last one");
            }
        }
    }

    /// `palisade keys rotate-signing`: a new signing key now; the old ones stay published until
    /// their tokens have expired. Returns the new key's id.
    pub async fn rotate_signing_key(&self) -> Result<String, AppError> {
        let key = self.new_token_key().await?;
        let kid = key.key_id.clone();
        let mut tx = Tx::anonymous();
        let added = tokens::rotate_key(&mut tx, key, self.clock.now(), None);
        audit::record(
            &mut tx,
            self.audit("signing_key.rotated", &RequestMeta::default())
                .actor(Actor::None)
                .details(json!({"purpose": "token", "reason": "operator", "key_id": kid})),
        );
        // Rotating is the sign-in login's (0043).
        tx.run(self.sign_in_db()?).await?.get(added)?;
        self.reload_token_keys().await?;
        Ok(kid)
    }

    /// `palisade keys revoke-signing KID`: the key stops verifying at once (on every node at its
    /// next reload, within a second) and is never published again. If it was the signing key,
    /// a new one takes over in the same transaction.
    pub async fn revoke_signing_key(&self, kid: &str) -> Result<(), AppError> {
        let now = self.clock.now();
        let replacement = self.new_token_key().await?;
        let mut tx = Tx::anonymous();
        tokens::revoke_key(&mut tx, kid, now);
        audit::record(
            &mut tx,
            self.audit("signing_key.revoked", &RequestMeta::default())
                .actor(Actor::None)
                .details(json!({"purpose": "token", "key_id": kid})),
        );
        let replaced = tokens::rotate_key(&mut tx, replacement, now, Some(self.policy.signing_key_rotation));
        audit::record_if_flag(
            &mut tx,
            self.audit("signing_key.rotated", &RequestMeta::default())
                .actor(Actor::None)
                .details(json!({"purpose": "token", "reason": "revocation"})),
            KEY_ROTATED_FLAG,
        );
        // An unknown or already revoked key id fails the transaction: NotFound. Revoking is the
        // sign-in login's (0043).
        let replaced = tx.run(self.sign_in_db()?).await?.get(replaced)?;
        if replaced {
            tracing::warn!(key_id = kid, "revoked the signing access-token key; a new key signs from now on");
        }
        self.reload_token_keys().await
    }

    /// Every access-token key with its state, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<TokenKey>, AppError> {
        let mut tx = Tx::anonymous();
        let keys = tokens::all_keys(&mut tx);
        Ok(tx.run(&self.db).await?.get(keys)?)
    }

    /// Signs an access token for a session.
    pub(crate) async fn sign_access_token(&self, claims: &AccessClaims) -> Result<String, AppError> {
        if self.tokens.signer().is_none() {
            self.reload_token_keys().await?;
        }
        let signer = self
            .tokens
            .signer()
            .ok_or_else(|| AppError::Unavailable("no access-token signing key is available".into()))?;
        Ok(signer.sign(claims))
    }
}

/// Why this node cannot sign: the provider is unreachable (as it is), or the key does not open.
fn signing_key_unavailable(key_id: &str, err: AppError) -> AppError {
    match err {
        AppError::Unavailable(why) => {
            AppError::Unavailable(format!("the access-token signing key {key_id} cannot be opened now: {why}"))
        }
        other => AppError::Unavailable(format!(
            "the access-token signing key {key_id} cannot be opened ({other}): every node must use the same key \
             provider (and, for keys stored before envelope encryption, the same instance key file). If that is \
             lost, `palisade keys revoke-signing {key_id}` replaces the signing key (its users sign in again)"
        )),
    }
}
