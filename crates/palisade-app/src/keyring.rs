//! Data keys in memory (E2, E4). The database holds each data key wrapped; the key provider
//! holds the wrapping keys. This node keeps unwrapped keys in a bounded cache with a TTL so the
//! provider is hit on a miss, not per request. Every failure to reach the provider fails closed
//! (`AppError::Unavailable`, a 503): nothing is ever written in the clear instead.
//!
//! Scopes: each organization has its own wrapping key (`org_….v<n>`), so destroying it shreds
//! that organization alone; the instance has one (`instance.v<n>`) for what belongs to users or
//! the instance (TOTP seeds, WebAuthn credentials, signing keys), which must outlive any org.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_core::{OrgId, Permission, SessionProof};
use palisade_crypto::envelope::{DataKey, fresh_key_material};
use palisade_crypto::provider::{KeyProvider, ProviderError};
use palisade_store::Tx;
use palisade_store::repo::data_keys::{self, DataKeyRow, NewDataKey};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{App, AppError};

/// Whose data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Instance,
    Org(OrgId),
}

impl Scope {
    /// The provider's name for this scope's wrapping key of generation `generation`.
    pub fn wrapping_key_name(self, generation: u32) -> String {
        match self {
            Scope::Instance => format!("instance.v{generation}"),
            Scope::Org(org) => format!("{org}.v{generation}"),
        }
    }

    fn label(self) -> String {
        match self {
            Scope::Instance => "instance".into(),
            Scope::Org(org) => org.to_string(),
        }
    }
}

/// The generation in a wrapping-key name (`org_….v3` → 3).
pub fn generation_of(wrapping_key: &str) -> u32 {
    wrapping_key.rsplit_once(".v").and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

/// What a data key is bound to when wrapped: its scope and id, so a wrapped key copied to
/// another organization's row does not unwrap.
pub fn wrap_context(scope: Scope, id: Uuid) -> Vec<u8> {
    format!("palisade-dek-v1|{}|{id}", scope.label()).into_bytes()
}

struct Cached {
    key: Arc<DataKey>,
    scope: Scope,
    loaded_at: OffsetDateTime,
}

/// See the module docs.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    keys: Mutex<HashMap<Uuid, Cached>>,
    /// Each scope's active (encrypting) key id, as last read.
    active: Mutex<HashMap<Scope, (Uuid, OffsetDateTime)>>,
    ttl: Duration,
    capacity: usize,
}

pub(crate) fn provider_error(err: ProviderError) -> AppError {
    match err {
        ProviderError::Unavailable(why) => AppError::Unavailable(format!("key provider: {why}")),
        // The wrapping key is gone (shredded) or the wrapped key was tampered with.
        ProviderError::NoSuchKey(name) => AppError::Undecryptable(format!("a data key under wrapping key {name}")),
        ProviderError::Corrupt => AppError::Undecryptable("a wrapped data key".into()),
        other => AppError::Internal(format!("key provider: {other}")),
    }
}

impl Keyring {
    /// `ttl`: how long an unwrapped key is trusted before the database and provider are asked
    /// again (this bounds how long another node keeps using a destroyed key); `capacity`: the
    /// most keys held.
    pub fn new(provider: Arc<dyn KeyProvider>, ttl: Duration, capacity: usize) -> Self {
        Self { provider, keys: Mutex::default(), active: Mutex::default(), ttl, capacity: capacity.max(1) }
    }

    /// How long this node trusts an unwrapped key (and which key is active) without asking again.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    fn cached(&self, id: Uuid, scope: Scope, now: OffsetDateTime) -> Option<Arc<DataKey>> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(&id).filter(|c| c.scope == scope && now - c.loaded_at < self.ttl).map(|c| c.key.clone())
    }

    fn cached_active(&self, scope: Scope, now: OffsetDateTime) -> Option<Arc<DataKey>> {
        let id = self.active.lock().unwrap_or_else(|p| p.into_inner()).get(&scope).copied();
        id.filter(|(_, at)| now - *at < self.ttl).and_then(|(id, _)| self.cached(id, scope, now))
    }

    fn remember(&self, scope: Scope, key: Arc<DataKey>, now: OffsetDateTime) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= self.capacity {
            keys.retain(|_, c| now - c.loaded_at < self.ttl);
            if keys.len() >= self.capacity {
                keys.clear();
            }
        }
        keys.insert(Uuid::from_bytes(key.id()), Cached { key, scope, loaded_at: now });
    }

    /// Drops every key of `scope` from this node's memory (after a shred or a rotation).
    pub fn forget(&self, scope: Scope) {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, c| c.scope != scope);
        self.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&scope);
    }

    /// Unwraps a stored key's material in the provider (off the async threads: it may block).
    pub(crate) async fn unwrap_material(
        &self,
        scope: Scope,
        row: &DataKeyRow,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, AppError> {
        let provider = self.provider.clone();
        let (name, wrapped, id) = (row.wrapping_key.clone(), row.wrapped.clone(), row.id);
        tokio::task::spawn_blocking(move || provider.unwrap(&name, &wrapped, &wrap_context(scope, id)))
            .await
            .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
            .map_err(provider_error)
    }

    async fn unwrap(&self, scope: Scope, row: &DataKeyRow) -> Result<Arc<DataKey>, AppError> {
        let material = self.unwrap_material(scope, row).await?;
        Ok(Arc::new(DataKey::new(*row.id.as_bytes(), &material)))
    }

    /// The key a stored row holds, from the cache or unwrapped (and then cached).
    pub(crate) async fn key_from_row(
        &self,
        scope: Scope,
        row: &DataKeyRow,
        now: OffsetDateTime,
    ) -> Result<Arc<DataKey>, AppError> {
        if let Some(key) = self.cached(row.id, scope, now) {
            return Ok(key);
        }
        let key = self.unwrap(scope, row).await?;
        self.remember(scope, key.clone(), now);
        Ok(key)
    }

    /// The key a stored row holds, remembered as its scope's active (encrypting) key.
    async fn activate(&self, scope: Scope, row: &DataKeyRow, now: OffsetDateTime) -> Result<Arc<DataKey>, AppError> {
        let key = self.key_from_row(scope, row, now).await?;
        self.active.lock().unwrap_or_else(|p| p.into_inner()).insert(scope, (row.id, now));
        Ok(key)
    }

    /// Makes a fresh data key wrapped under `scope`'s wrapping key of `generation` (created in
    /// the provider if it does not exist yet).
    pub async fn mint(&self, scope: Scope, generation: u32) -> Result<(Uuid, String, Vec<u8>), AppError> {
        let provider = self.provider.clone();
        let id = Uuid::now_v7();
        let name = scope.wrapping_key_name(generation);
        let wrapped = tokio::task::spawn_blocking({
            let name = name.clone();
            move || {
                provider.create_key(&name)?;
                provider.wrap(&name, &fresh_key_material(), &wrap_context(scope, id))
            }
        })
        .await
        .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
        .map_err(provider_error)?;
        Ok((id, name, wrapped))
    }
}

impl App {
    /// The organization's active data key (created on first use), for sealing new values. The
    /// caller must hold `needed` (the permission of the write it seals for): someone who may not
    /// write never makes an organization's first key.
    pub(crate) async fn org_sealing_key(
        &self,
        proof: &SessionProof,
        org: OrgId,
        needed: Permission,
    ) -> Result<Arc<DataKey>, AppError> {
        let scope = Scope::Org(org);
        let now = self.clock.now();
        if let Some(key) = self.keyring.cached_active(scope, now) {
            return Ok(key);
        }
        let rows = self.org_key_rows(proof, org, Some(needed)).await?;
        let row = match rows.into_iter().find(|r| r.retired_at.is_none()) {
            Some(row) => row,
            None => {
                let (id, name, wrapped) = self.keyring.mint(scope, 1).await?;
                let mut tx = Tx::tenant(proof, now, org);
                data_keys::insert_org_key(
                    &mut tx,
                    org,
                    NewDataKey { id, wrapping_key: &name, wrapped: &wrapped, at: now },
                );
                tx.run(&self.db).await?;
                // Another node may have won the race: use whichever key is active now.
                self.org_key_rows(proof, org, Some(needed))
                    .await?
                    .into_iter()
                    .find(|r| r.retired_at.is_none())
                    .ok_or_else(|| {
                        AppError::Internal("the organization's data key vanished while being created".into())
                    })?
            }
        };
        self.keyring.activate(scope, &row, now).await
    }

    /// The organization's data key `id` (active or retired), for opening a stored value.
    pub(crate) async fn org_opening_key(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: Uuid,
    ) -> Result<Arc<DataKey>, AppError> {
        let scope = Scope::Org(org);
        let now = self.clock.now();
        if let Some(key) = self.keyring.cached(id, scope, now) {
            return Ok(key);
        }
        let rows = self.org_key_rows(proof, org, None).await?;
        let row = rows.iter().find(|r| r.id == id).ok_or_else(|| {
            AppError::Undecryptable(format!("a value under data key {} of {org}", data_key_label(id)))
        })?;
        self.keyring.key_from_row(scope, row, now).await
    }

    async fn org_key_rows(
        &self,
        proof: &SessionProof,
        org: OrgId,
        needed: Option<Permission>,
    ) -> Result<Vec<DataKeyRow>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        if let Some(permission) = needed {
            tx.require(permission);
        }
        let rows = data_keys::org_keys(&mut tx, org);
        Ok(tx.run(&self.db).await?.get(rows)?)
    }

    /// The instance's active data key (created on first use).
    pub async fn instance_sealing_key(&self) -> Result<Arc<DataKey>, AppError> {
        let now = self.clock.now();
        if let Some(key) = self.keyring.cached_active(Scope::Instance, now) {
            return Ok(key);
        }
        let row =
            match self.instance_key_rows().await?.into_iter().find(|r| r.retired_at.is_none()) {
                Some(row) => row,
                None => {
                    let (id, name, wrapped) = self.keyring.mint(Scope::Instance, 1).await?;
                    let mut tx = Tx::anonymous();
                    data_keys::insert_instance_key(
                        &mut tx,
                        NewDataKey { id, wrapping_key: &name, wrapped: &wrapped, at: now },
                    );
                    tx.run(&self.db).await?;
                    self.instance_key_rows().await?.into_iter().find(|r| r.retired_at.is_none()).ok_or_else(|| {
                        AppError::Internal("the instance data key vanished while being created".into())
                    })?
                }
            };
        self.keyring.activate(Scope::Instance, &row, now).await
    }

    /// The instance's data key `id`, for opening a stored value.
    pub async fn instance_opening_key(&self, id: Uuid) -> Result<Arc<DataKey>, AppError> {
        let now = self.clock.now();
        if let Some(key) = self.keyring.cached(id, Scope::Instance, now) {
            return Ok(key);
        }
        let rows = self.instance_key_rows().await?;
        let row = rows
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::Internal(format!("instance data key {id} is not stored")))?;
        self.keyring.key_from_row(Scope::Instance, row, now).await
    }

    async fn instance_key_rows(&self) -> Result<Vec<DataKeyRow>, AppError> {
        let mut tx = Tx::anonymous();
        let rows = data_keys::instance_keys(&mut tx);
        Ok(tx.run(&self.db).await?.get(rows)?)
    }

    /// Seals a value under the instance's data key (TOTP seeds, WebAuthn credentials, signing keys).
    pub async fn instance_seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, AppError> {
        Ok(self.instance_sealing_key().await?.seal(plaintext, context))
    }

    /// Opens a value sealed by `instance_seal`. Values sealed before envelope encryption (the
    /// instance-key format) still open, so an upgrade loses nothing.
    pub async fn instance_open(&self, sealed: &[u8], context: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, AppError> {
        let Some(id) = palisade_crypto::envelope::key_id_of(sealed) else {
            return self
                .keys
                .open(sealed, context)
                .map_err(|_| AppError::Internal("a sealed value does not open".into()));
        };
        let key = self.instance_opening_key(Uuid::from_bytes(id)).await?;
        key.open(sealed, context).map_err(|_| AppError::Internal("a sealed value does not open".into()))
    }
}

/// How a data key is named to people (`dek_…`, a TypeID of its UUID).
pub fn data_key_label(id: Uuid) -> String {
    palisade_core::DataKeyId::from_uuid(id).to_string()
}
