//! The bearer key: access-token callers prove their session to the database with the session
//! id's MAC under it (0037). Each node keeps the current key, reads it again every second
//! (`run_token_keys`), and `palisade keys rotate-bearer` replaces it without ending any token
//! (0038): a proof is made per request from the token's session id.

use palisade_store::Tx;
use palisade_store::repo::audit::{self, Actor};
use palisade_store::repo::tokens;
use serde_json::json;

use crate::{App, AppError, RequestMeta};

/// The key this node proves sessions with, and its id (to notice a rotation).
pub struct LoadedBearerKey {
    id: i32,
    key: palisade_crypto::BearerKey,
}

/// How long keys replaced by a rotation stay accepted unless told otherwise: every node reads
/// the new key within a second; the rest is margin for a node whose database is slow to answer.
pub const BEARER_KEY_GRACE_SECONDS: i32 = 60;

impl App {
    /// Reads the current bearer key through the sign-in login; keeps it if it is the one this
    /// node has already.
    pub async fn load_bearer_key(&self) -> Result<(), AppError> {
        let mut tx = Tx::anonymous();
        let current = tokens::current_bearer_key(&mut tx);
        let (id, bytes) = tx.run(self.sign_in_db()?).await?.get(current)?;
        if self.bearer_key.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|k| k.id == id) {
            return Ok(());
        }
        let key = palisade_crypto::BearerKey::from_stored(&bytes).map_err(|err| AppError::Internal(err.to_string()))?;
        *self.bearer_key.write().unwrap_or_else(|p| p.into_inner()) = Some(LoadedBearerKey { id, key });
        Ok(())
    }

    /// What an access-token caller proves to the database: its session (already verified by
    /// signature here) and the session id's MAC under the bearer key.
    pub fn access_proof(&self, session: palisade_core::SessionId) -> Result<palisade_core::SessionProof, AppError> {
        let loaded = self.bearer_key.read().unwrap_or_else(|p| p.into_inner());
        let loaded = loaded
            .as_ref()
            .ok_or_else(|| AppError::Unavailable("the bearer key is not loaded yet; retry in a moment".into()))?;
        Ok(palisade_core::SessionProof::Access { session, mac: loaded.key.mac(session.as_uuid().as_bytes()) })
    }

    /// `palisade keys rotate-bearer`: a new bearer key, current from now (this node at once,
    /// every other within a second); the replaced ones are accepted for `grace_seconds` more
    /// (0: at once, for a key known to have leaked). Audited. Returns the new key's id.
    pub async fn rotate_bearer_key(&self, grace_seconds: i32) -> Result<i32, AppError> {
        let mut tx = Tx::anonymous();
        let rotated = tokens::rotate_bearer_key(&mut tx, grace_seconds);
        audit::record(
            &mut tx,
            self.audit("bearer_key.rotated", &RequestMeta::default())
                .actor(Actor::None)
                .details(json!({"grace_seconds": grace_seconds})),
        );
        let id = tx.run(self.sign_in_db()?).await?.get(rotated)?;
        self.load_bearer_key().await?;
        Ok(id)
    }
}
