//! Key status and rotation (E4). A data-key rotation makes a new key active at once (new values
//! use it), then re-encrypts what the retired key still holds in batches; both keys decrypt
//! meanwhile, so reads never wait. Progress is just "what is still under a retired key", so a
//! rotation killed halfway resumes where it stopped, and the compare-and-set in
//! `rotation_apply` means no value is lost or encrypted twice. A KEK rotation rotates the
//! provider's master key and moves every data key to a new wrapping key without touching data.

use std::sync::Arc;

use palisade_core::{EventId, OrgId, Permission, SessionProof};
use palisade_crypto::envelope::DataKey;
use palisade_crypto::provider::ProviderInfo;
use palisade_store::repo::data_keys::{self, DataKeyRow};
use palisade_store::repo::key_rotation::{self, OrgKeyRow, Rewrap, Rotation};
use palisade_store::{StoreError, Tx};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::keyring::{Scope, generation_of, provider_error, wrap_context};
use crate::{App, AppError};

/// Values re-encrypted per database round trip.
pub const ROTATION_BATCH: i32 = 500;

/// An organization's keys as `GET …/keys` and `palisade keys status` show them.
pub struct KeyStatus {
    pub provider: ProviderInfo,
    pub keys: Vec<OrgKeyRow>,
    pub rotation_period: Duration,
}

impl KeyStatus {
    fn active(&self) -> Option<&OrgKeyRow> {
        self.keys.iter().find(|k| k.key.retired_at.is_none())
    }

    /// When the active key took over (the last rotation), if it replaced an earlier one or was
    /// rewrapped.
    pub fn last_rotated_at(&self) -> Option<OffsetDateTime> {
        self.active().map(|k| k.key.rewrapped_at.map_or(k.key.created_at, |r| r.max(k.key.created_at)))
    }

    pub fn next_rotation_at(&self) -> Option<OffsetDateTime> {
        self.active().map(|k| k.key.created_at + self.rotation_period)
    }

    /// Values still under retired keys: a rotation is re-encrypting while this is above zero.
    pub fn values_left_to_reencrypt(&self) -> i64 {
        self.keys.iter().filter(|k| k.key.retired_at.is_some()).map(|k| k.values_left).sum()
    }

    pub fn rotating(&self) -> bool {
        self.keys.iter().any(|k| k.key.retired_at.is_some())
    }
}

/// Where one step of a rotation left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    /// Values re-encrypted by this step.
    pub reencrypted: i64,
    /// Nothing is left under a retired key.
    pub done: bool,
    /// The retired key is deleted too (only once every node has dropped it from its cache).
    pub retired_key_deleted: bool,
}

fn value_context(org: OrgId, kind: &str, id: Uuid) -> Option<Vec<u8>> {
    match kind {
        "record" => Some(crate::sealed_fields::context(org, palisade_core::RecordId::from_uuid(id))),
        "secret" => Some(crate::secrets::context(org, palisade_core::SecretId::from_uuid(id))),
        _ => None,
    }
}

impl App {
    /// The organization's key status (needs security.settings).
    pub async fn org_key_status(&self, proof: &SessionProof, org: OrgId) -> Result<KeyStatus, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::SecuritySettings);
        let rows = key_rotation::org_key_rows(&mut tx, org.as_uuid());
        let keys = tx.run(&self.db).await?.get(rows)?;
        Ok(self.key_status(keys))
    }

    fn key_status(&self, keys: Vec<OrgKeyRow>) -> KeyStatus {
        KeyStatus { provider: self.keyring.provider().info(), keys, rotation_period: self.policy.data_key_rotation }
    }

    /// Every organization's key status and the instance's keys, for `palisade keys status`.
    pub async fn all_key_status(&self) -> Result<(Vec<DataKeyRow>, Vec<(OrgId, String, KeyStatus)>), AppError> {
        let mut tx = Tx::anonymous();
        let orgs = key_rotation::orgs_with_keys(&mut tx);
        let instance = data_keys::instance_keys(&mut tx);
        let mut results = tx.run(self.key_jobs_db()?).await?;
        let (orgs, instance) = (results.get(orgs)?, results.get(instance)?);
        let mut statuses = Vec::with_capacity(orgs.len());
        for (org, name) in orgs {
            let keys = self.key_keeper_rows(org).await?;
            statuses.push((OrgId::from_uuid(org), name, self.key_status(keys)));
        }
        Ok((instance, statuses))
    }

    async fn key_keeper_rows(&self, org: Uuid) -> Result<Vec<OrgKeyRow>, AppError> {
        let mut tx = Tx::anonymous();
        let rows = key_rotation::org_key_rows(&mut tx, org);
        Ok(tx.run(self.key_jobs_db()?).await?.get(rows)?)
    }

    /// Unwraps an organization's key from its row (no session: the job and the CLI).
    async fn org_key_of(&self, org: OrgId, row: &DataKeyRow) -> Result<Arc<DataKey>, AppError> {
        self.keyring.key_from_row(Scope::Org(org), row, self.clock.now()).await
    }

    /// Starts rotating the organization's data key: a new key encrypts from now on; the job
    /// re-encrypts what the old one holds. `reason`: `scheduled` or `on demand`.
    pub async fn start_org_key_rotation(&self, org: OrgId, reason: &str) -> Result<(), AppError> {
        let rows = self.key_keeper_rows(org.as_uuid()).await?;
        let generation = rows.iter().map(|r| generation_of(&r.key.wrapping_key)).max().unwrap_or(1);
        let (id, name, wrapped) = self.keyring.mint(Scope::Org(org), generation).await?;
        let mut tx = Tx::anonymous();
        let _retired = key_rotation::start_rotation(
            &mut tx,
            Rotation {
                org: org.as_uuid(),
                id,
                wrapping_key: &name,
                wrapped: &wrapped,
                at: self.clock.now(),
                event: EventId::new(&*self.clock, &*self.random).as_uuid(),
                reason,
            },
        );
        match tx.run(self.key_jobs_db()?).await {
            Err(StoreError::Conflict { .. }) => {
                Err(AppError::Conflict("a rotation of this organization's key is still re-encrypting".into()))
            }
            Err(StoreError::NotFound) if rows.is_empty() => {
                // No such organization: take back the wrapping key minted for it.
                let provider = self.keyring.provider().clone();
                let _ = tokio::task::spawn_blocking(move || provider.destroy_key(&name)).await;
                Err(AppError::NotFound)
            }
            other => {
                other?;
                self.keyring.forget(Scope::Org(org));
                Ok(())
            }
        }
    }

    /// Re-encrypts up to `batch` values still under the organization's retired key, and retires
    /// that key for good once nothing is left under it.
    pub async fn rotation_step(&self, org: OrgId, batch: i32) -> Result<RotationProgress, AppError> {
        // Uncounted: counting what is left would scan the organization's index on every batch.
        let mut tx = Tx::anonymous();
        let rows = key_rotation::org_keys_uncounted(&mut tx, org.as_uuid());
        let rows = tx.run(self.key_jobs_db()?).await?.get(rows)?;
        let Some(active) = rows.iter().find(|r| r.key.retired_at.is_none()) else {
            return Ok(RotationProgress { reencrypted: 0, done: true, retired_key_deleted: true });
        };
        let Some(retired) = rows.iter().find(|r| r.key.retired_at.is_some()) else {
            return Ok(RotationProgress { reencrypted: 0, done: true, retired_key_deleted: true });
        };
        let mut tx = Tx::anonymous();
        let values = key_rotation::rotation_batch(&mut tx, org.as_uuid(), retired.key.id, batch.max(1));
        let values = tx.run(self.key_jobs_db()?).await?.get(values)?;
        if values.is_empty() {
            let mut tx = Tx::anonymous();
            let event = EventId::new(&*self.clock, &*self.random).as_uuid();
            let min_age = self.retired_key_min_age();
            let finished =
                key_rotation::finish_rotation(&mut tx, org.as_uuid(), retired.key.id, self.clock.now(), event, min_age);
            let deleted = tx.run(self.key_jobs_db()?).await?.get(finished)?;
            let others = rows.iter().filter(|r| r.key.retired_at.is_some()).count() > 1;
            return Ok(RotationProgress { reencrypted: 0, done: !others, retired_key_deleted: deleted && !others });
        }
        let (old, new) = (self.org_key_of(org, &retired.key).await?, self.org_key_of(org, &active.key).await?);
        let mut resealed = Vec::with_capacity(values.len());
        for value in &values {
            let context = value_context(org, &value.kind, value.id)
                .ok_or_else(|| AppError::Internal(format!("unknown kind of sealed value {:?}", value.kind)))?;
            let plain = old.open(&value.sealed, &context).map_err(|_| {
                AppError::Undecryptable(format!("{} {} of {org} (during rotation)", value.kind, value.id))
            })?;
            resealed.push(new.seal(&plain, &context));
        }
        let mut tx = Tx::anonymous();
        let applied = key_rotation::rotation_apply(&mut tx, org.as_uuid(), &values, resealed);
        let applied = i64::from(tx.run(self.key_jobs_db()?).await?.get(applied)?);
        Ok(RotationProgress { reencrypted: applied, done: false, retired_key_deleted: false })
    }

    /// How long a retired key is kept after its values are re-encrypted: longer than any node
    /// keeps it cached as the active key (twice the cache lifetime, and a minute), so a node that
    /// has not noticed the rotation never seals under a deleted key.
    pub fn retired_key_min_age(&self) -> Duration {
        self.keyring.ttl() * 2 + Duration::minutes(1)
    }

    /// Values still under the organization's retired keys (0 when no rotation runs).
    pub async fn values_left_to_reencrypt(&self, org: OrgId) -> Result<i64, AppError> {
        let rows = self.key_keeper_rows(org.as_uuid()).await?;
        Ok(rows.iter().filter(|r| r.key.retired_at.is_some()).map(|r| r.values_left).sum())
    }

    /// The scheduled job: starts rotations that are due and moves every running one forward by
    /// up to `batches` batches. Returns how many values it re-encrypted.
    pub async fn run_key_maintenance(&self, batches: usize) -> Result<i64, AppError> {
        let mut tx = Tx::anonymous();
        let due = key_rotation::key_work_due(&mut tx, self.clock.now(), self.policy.data_key_rotation, 100);
        let due = tx.run(self.key_jobs_db()?).await?.get(due)?;
        let mut total = 0;
        for org in due.into_iter().map(OrgId::from_uuid) {
            // One organization that cannot move now (an undecryptable value, a provider outage)
            // must not hold up the others.
            match self.maintain_org_keys(org, batches).await {
                Ok(moved) => total += moved,
                Err(err) => tracing::warn!(org = %org, error = %err, "data-key rotation of this organization deferred"),
            }
        }
        Ok(total)
    }

    async fn maintain_org_keys(&self, org: OrgId, batches: usize) -> Result<i64, AppError> {
        let mut tx = Tx::anonymous();
        let rows = key_rotation::org_keys_uncounted(&mut tx, org.as_uuid());
        let rows = tx.run(self.key_jobs_db()?).await?.get(rows)?;
        if !rows.iter().any(|r| r.key.retired_at.is_some()) {
            match self.start_org_key_rotation(org, "scheduled").await {
                Ok(()) | Err(AppError::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let mut moved = 0;
        for _ in 0..batches {
            let progress = self.rotation_step(org, ROTATION_BATCH).await?;
            moved += progress.reencrypted;
            if progress.done {
                break;
            }
        }
        Ok(moved)
    }

    /// Rotates the key provider's master key, then moves the instance's and every
    /// organization's data keys to a new wrapping key (rewrapped in the provider; no data is
    /// touched) and destroys the old wrapping keys. Safe to run again after a crash. `progress`
    /// hears about each scope as it is done.
    pub async fn rotate_kek(&self, mut progress: impl FnMut(&str, usize)) -> Result<bool, AppError> {
        // Before the provider is touched: a master key rotated with no way to rewrap is no use.
        self.key_jobs_db()?;
        let provider = self.keyring.provider().clone();
        let rotated_master = tokio::task::spawn_blocking(move || provider.rotate_master())
            .await
            .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
            .map_err(provider_error)?;
        let mut tx = Tx::anonymous();
        let orgs = key_rotation::orgs_with_keys(&mut tx);
        let instance = data_keys::instance_keys(&mut tx);
        let mut results = tx.run(self.key_jobs_db()?).await?;
        let (orgs, instance) = (results.get(orgs)?, results.get(instance)?);
        let moved = self.rewrap_scope(Scope::Instance, &instance).await?;
        progress("instance", moved);
        for (org, name) in orgs {
            let org = OrgId::from_uuid(org);
            let rows: Vec<DataKeyRow> = self.key_keeper_rows(org.as_uuid()).await?.into_iter().map(|r| r.key).collect();
            let moved = self.rewrap_scope(Scope::Org(org), &rows).await?;
            progress(&format!("{name} ({org})"), moved);
        }
        Ok(rotated_master)
    }

    /// Moves every key of `scope` to a new wrapping key generation, then destroys the ones no
    /// longer used.
    async fn rewrap_scope(&self, scope: Scope, rows: &[DataKeyRow]) -> Result<usize, AppError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let next = rows.iter().map(|r| generation_of(&r.wrapping_key)).max().unwrap_or(0) + 1;
        let to = scope.wrapping_key_name(next);
        let provider = self.keyring.provider().clone();
        let create = to.clone();
        tokio::task::spawn_blocking(move || provider.create_key(&create))
            .await
            .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
            .map_err(provider_error)?;
        let now = self.clock.now();
        for row in rows {
            let key = self.keyring.unwrap_material(scope, row).await?;
            let provider = self.keyring.provider().clone();
            let (name, id) = (to.clone(), row.id);
            let wrapped = tokio::task::spawn_blocking(move || provider.wrap(&name, &key, &wrap_context(scope, id)))
                .await
                .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
                .map_err(provider_error)?;
            let rewrap = Rewrap { id: row.id, from: &row.wrapping_key, to: &to, wrapped: &wrapped, at: now };
            let mut tx = Tx::anonymous();
            match scope {
                Scope::Instance => key_rotation::rewrap_instance_key(&mut tx, rewrap),
                Scope::Org(org) => {
                    let event = EventId::new(&*self.clock, &*self.random).as_uuid();
                    // false: a rerun found it already moved; either way it is under `to` now.
                    let _moved = key_rotation::rewrap_org_key(&mut tx, org.as_uuid(), rewrap, event);
                }
            }
            tx.run(self.key_jobs_db()?).await?;
        }
        // A data-key rotation running meanwhile may have minted a key under an old generation:
        // destroy only names no stored key uses any more (the next rotate-kek moves the rest).
        let still_used: Vec<String> = match scope {
            Scope::Instance => {
                let mut tx = Tx::anonymous();
                let rows = data_keys::instance_keys(&mut tx);
                tx.run(self.key_jobs_db()?).await?.get(rows)?.into_iter().map(|r| r.wrapping_key).collect()
            }
            Scope::Org(org) => {
                let mut tx = Tx::anonymous();
                let rows = key_rotation::org_keys_uncounted(&mut tx, org.as_uuid());
                tx.run(self.key_jobs_db()?).await?.get(rows)?.into_iter().map(|r| r.key.wrapping_key).collect()
            }
        };
        let mut old: Vec<String> =
            rows.iter().map(|r| r.wrapping_key.clone()).filter(|n| *n != to && !still_used.contains(n)).collect();
        old.sort();
        old.dedup();
        let provider = self.keyring.provider().clone();
        tokio::task::spawn_blocking(move || old.iter().try_for_each(|name| provider.destroy_key(name)))
            .await
            .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
            .map_err(provider_error)?;
        self.keyring.forget(scope);
        Ok(rows.len())
    }
}

impl App {
    /// The key maintenance loop every node runs: organizations past their deletion grace period
    /// are shredded, scheduled rotations start and running ones move
    /// forward (a bounded amount per tick, so one large organization cannot starve the rest;
    /// several nodes may work at once, the compare-and-set keeps that safe).
    pub async fn run_key_rotation(self, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.run_org_shredding().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(organizations = n, "scheduled organization deletions carried out"),
                Err(err) => tracing::warn!(error = %err, "organization shredding paused; retrying on the next tick"),
            }
            match self.run_key_maintenance(20).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reencrypted = n, "data-key rotation moved forward"),
                Err(err) => tracing::warn!(error = %err, "data-key rotation paused; retrying on the next tick"),
            }
        }
    }
}
