//! The audit trail as customers use it: the sequencer that seals events into per-organization
//! hash chains and signs checkpoints, reading and exporting events, and verifying the chain.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core::{OrgId, Permission, SessionProof, ValidationError, parse_any_typeid};
use palisade_crypto::signing::KeyPair;
use palisade_store::Tx;
use palisade_store::repo::audit::{self, EventBatches, EventQuery, EventRow, RawEvent, RequestMeta};
use palisade_store::repo::audit_chain::{self, Checkpoint, NewCheckpoint, StoredKey, checkpoint_message};
use palisade_store::{Db, StoreError};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit_verify::{Anchor, ChainSource, Report, verify_chain};
use crate::{App, AppError};

/// A checkpoint at least every this many events…
pub const CHECKPOINT_EVERY_EVENTS: i64 = 1000;
/// …and at least hourly while events arrive.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(3600);
/// Events sealed per sequencer call at most.
const SEAL_BATCH: i32 = 10_000;
/// Retention rounds per run at most (each cuts a chain by up to 100,000 positions).
const RETENTION_ROUNDS: usize = 1000;
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
/// Events per batch while exporting; the caller is checked again for each.
const EXPORT_BATCH: usize = 10_000;

/// How many exports may run at once on one node. Each holds a pooled connection (its snapshot)
/// for as long as it streams, so they get at most a quarter of the pool: exports, however many
/// are asked for, never starve the node's other requests of connections.
pub struct ExportSlots(Arc<tokio::sync::Semaphore>);

impl ExportSlots {
    /// Slots for a node whose runtime pool holds `pool_size` connections.
    pub fn for_pool(pool_size: usize) -> Self {
        ExportSlots(Arc::new(tokio::sync::Semaphore::new((pool_size / 4).max(1))))
    }
}

/// A running export: every matching event of one snapshot, newest first, in batches. The
/// snapshot is one read-only transaction on a connection held until the last batch (dropping
/// the export ends it). While it runs, the caller's session, membership and audit.export are
/// checked again for every batch, beside the snapshot, so a revoked session or a removed
/// permission stops it within one batch. It holds one of the node's `ExportSlots` until dropped.
pub struct AuditExport {
    app: App,
    proof: SessionProof,
    org: OrgId,
    events: EventBatches,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl AuditExport {
    /// The next batch (empty at the end), once the caller has been checked again.
    pub async fn next_batch(&mut self) -> Result<Vec<RawEvent>, AppError> {
        let mut check = Tx::tenant(&self.proof, self.app.clock.now(), self.org);
        check.require(Permission::AuditExport);
        let (batch, still_allowed) = tokio::join!(self.events.next_batch(EXPORT_BATCH), check.run(&self.app.db));
        still_allowed?;
        Ok(batch?)
    }
}

/// One page of events, newest first.
pub struct EventPage {
    pub items: Vec<EventRow>,
    pub next_cursor: Option<String>,
}

fn bad(parameter: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { field: parameter.to_owned(), message: message.into() }
}

fn cursor_context(org: OrgId) -> Vec<u8> {
    format!("palisade-audit-cursor-v1|{org}").into_bytes()
}

/// Parses `from`, `to`, `actor`, `action`, `target`, `limit` and `cursor`.
fn parse_query(app: &App, org: OrgId, pairs: &[(String, String)]) -> Result<EventQuery, AppError> {
    let mut errors = Vec::new();
    let mut q = EventQuery {
        org,
        from: None,
        to: None,
        actor: None,
        action: None,
        target: None,
        before: None,
        limit: DEFAULT_PAGE,
    };
    let time = |value: &str, name: &str, errors: &mut Vec<ValidationError>| {
        OffsetDateTime::parse(value, &Rfc3339)
            .map_err(|_| errors.push(bad(name, "must be an RFC 3339 time, e.g. 2026-11-30T00:00:00Z")))
            .ok()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "from" => q.from = time(value, "from", &mut errors),
            "to" => q.to = time(value, "to", &mut errors),
            "actor" => match (value.parse::<palisade_core::UserId>(), value.parse::<palisade_core::ApiKeyId>()) {
                (Ok(user), _) => q.actor = Some(user.as_uuid()),
                (_, Ok(key)) => q.actor = Some(key.as_uuid()),
                _ => errors.push(bad("actor", "must be a user id (usr_…) or an API key id (key_…)")),
            },
            "action" if value.len() <= 64 && value.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.') => {
                q.action = Some(value.clone())
            }
            "action" => errors.push(bad("action", "must be an action name such as record.created")),
            "target" => match parse_any_typeid(value) {
                Some(id) => q.target = Some(id),
                None => errors.push(bad("target", "must be an id such as rec_… or usr_…")),
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => q.limit = n,
                _ => errors.push(bad("limit", format!("must be a whole number from 1 to {MAX_PAGE}"))),
            },
            "cursor" => {
                let opened = URL_SAFE_NO_PAD
                    .decode(value)
                    .ok()
                    .and_then(|sealed| app.keys.open(&sealed, &cursor_context(org)).ok())
                    .and_then(|plain| serde_json::from_slice::<(i64, uuid::Uuid)>(&plain).ok())
                    .and_then(|(micros, id)| {
                        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok().map(|at| (at, id))
                    });
                match opened {
                    Some(before) => q.before = Some(before),
                    None => errors.push(bad("cursor", "is not a cursor of this organization's audit log")),
                }
            }
            "format" => {}
            other => errors.push(bad(other, "unknown parameter; use from, to, actor, action, target, limit, cursor")),
        }
    }
    if errors.is_empty() { Ok(q) } else { Err(AppError::InvalidQuery(errors)) }
}

/// Reads a chain as the caller: each call is a tenant transaction that checks audit.read.
struct CallerChain<'a> {
    db: &'a Db,
    proof: &'a SessionProof,
    now: OffsetDateTime,
    org: OrgId,
}

impl CallerChain<'_> {
    fn tx(&self) -> Tx<palisade_store::Tenant> {
        let mut tx = Tx::tenant(self.proof, self.now, self.org);
        tx.require(Permission::AuditRead);
        tx
    }
}

impl ChainSource for CallerChain<'_> {
    async fn head(&mut self) -> Result<Option<audit_chain::Head>, StoreError> {
        let mut tx = self.tx();
        let step = audit_chain::head(&mut tx, self.org);
        tx.run(self.db).await?.get(step)
    }
    async fn page(&mut self, after: i64, limit: i64) -> Result<Vec<audit_chain::ChainRow>, StoreError> {
        let mut tx = self.tx();
        let step = audit_chain::page(&mut tx, self.org, after, limit);
        tx.run(self.db).await?.get(step)
    }
    async fn unchained(&mut self) -> Result<i64, StoreError> {
        let mut tx = self.tx();
        let step = audit_chain::unchained(&mut tx, self.org);
        tx.run(self.db).await?.get(step)
    }
    async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut tx = self.tx();
        let step = audit_chain::checkpoints(&mut tx, self.org, 10_000);
        tx.run(self.db).await?.get(step)
    }
}

impl App {
    /// Runs the sequencer once; returns how many events it sealed.
    pub async fn seal_audit(&self) -> Result<i32, AppError> {
        let client = self.db.client().await?;
        Ok(audit_chain::seal(&client, SEAL_BATCH).await?)
    }

    /// The instance's audit signing key, created (and stored sealed under the instance's data
    /// key) on first use.
    async fn audit_signer(&self) -> Result<Arc<KeyPair>, AppError> {
        self.audit_key
            .get_or_try_init(|| async {
                let client = self.db.client().await?;
                if let Some(stored) = audit_chain::active_key(&client, "audit").await? {
                    return Ok(Arc::new(self.open_audit_key(&stored).await?));
                }
                let pair = KeyPair::generate();
                let stored = StoredKey {
                    key_id: pair.key_id(),
                    public_key: pair.public_key().to_vec(),
                    sealed_private: self.seal_signing_key(&pair).await?,
                };
                // Adding a signing key is the sign-in login's (0043).
                let sign_in = self.sign_in_db()?.client().await?;
                if audit_chain::add_audit_key(&sign_in, &stored, self.clock.now()).await? == stored.key_id {
                    return Ok(Arc::new(pair));
                }
                // Another node added the instance's key first: sign with that one.
                match audit_chain::active_key(&client, "audit").await? {
                    Some(theirs) => Ok(Arc::new(self.open_audit_key(&theirs).await?)),
                    None => Err(AppError::Internal("the audit signing key another node added is gone".into())),
                }
            })
            .await
            .cloned()
    }

    async fn open_audit_key(&self, stored: &StoredKey) -> Result<KeyPair, AppError> {
        self.open_signing_key(&stored.key_id, &stored.sealed_private).await.map_err(|err| match err {
            AppError::Internal(why) => AppError::Internal(format!(
                "the audit signing key does not open ({why}): every node must use the same key provider"
            )),
            other => other,
        })
    }

    /// Signs a checkpoint for every chain that is due (1,000 new events, or an hour).
    pub async fn checkpoint_audit(&self) -> Result<usize, AppError> {
        let client = self.db.client().await?;
        let now = self.clock.now();
        let due = audit_chain::due_checkpoints(&client, now, CHECKPOINT_EVERY_EVENTS, CHECKPOINT_EVERY, 1000).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let signer = self.audit_signer().await?;
        // Stored with microsecond precision: sign exactly what will be read back.
        let signed_at = now.replace_nanosecond(now.microsecond() * 1000).unwrap_or(now);
        for (org, seq, hash) in &due {
            let signature = signer.sign(&checkpoint_message(*org, *seq, hash, signed_at));
            let key_id = signer.key_id();
            audit_chain::record_checkpoint(
                &client,
                NewCheckpoint { org: *org, seq: *seq, hash, signed_at, key_id: &key_id, signature: &signature },
            )
            .await?;
        }
        Ok(due.len())
    }

    /// Applies every organization's audit retention, and the instance chain's (the database's
    /// `instance_audit`, set by the operator): cuts each due chain under a signed
    /// truncation checkpoint (legal hold and the minimum of 365 days are enforced in SQL). A
    /// chain is cut at most 100,000 positions at a time (each query stays well inside the
    /// statement timeout), so a longer backlog takes several rounds, until nothing is due.
    /// Returns how many events were deleted.
    pub async fn apply_audit_retention(&self) -> Result<i64, AppError> {
        let client = self.db.client().await?;
        let now = self.clock.now();
        let signed_at = now.replace_nanosecond(now.microsecond() * 1000).unwrap_or(now);
        let mut deleted = 0;
        // Bounded, in case a purge keeps answering without moving a chain's base.
        let mut instance_failed = !self.instance_purge_allowed().await;
        for _ in 0..RETENTION_ROUNDS {
            let due = audit_chain::retention_due(&client, signed_at, 1000).await?;
            // The instance chain's cut, if due; a failure there is logged, ends the instance's
            // part of this run and does not hold up the organizations'.
            let instance_due = match instance_failed {
                true => None,
                false => audit_chain::instance_retention_due(&client, signed_at).await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "instance audit retention failed; will retry tomorrow");
                    instance_failed = true;
                    None
                }),
            };
            if due.is_empty() && instance_due.is_none() {
                break;
            }
            let signer = self.audit_signer().await?;
            let key_id = signer.key_id();
            if let Some((seq, hash)) = &instance_due {
                let chain = audit_chain::instance_chain();
                let signature = signer.sign(&audit_chain::truncation_message(chain, *seq, hash, signed_at));
                let cut =
                    NewCheckpoint { org: chain, seq: *seq, hash, signed_at, key_id: &key_id, signature: &signature };
                match audit_chain::purge_instance(&client, cut).await {
                    Ok(purged) => {
                        deleted += purged;
                        tracing::info!(through_seq = seq, "instance audit events past retention purged");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "instance audit retention failed; will retry tomorrow");
                        instance_failed = true;
                    }
                }
            }
            for (org, seq, hash) in &due {
                let signature = signer.sign(&audit_chain::truncation_message(*org, *seq, hash, signed_at));
                deleted += audit_chain::purge(
                    &client,
                    NewCheckpoint { org: *org, seq: *seq, hash, signed_at, key_id: &key_id, signature: &signature },
                )
                .await?;
                tracing::info!(org = %org, through_seq = seq, "audit events past retention purged");
            }
        }
        Ok(deleted)
    }

    /// Whether this run may cut the instance chain. A server configured with a longer retention
    /// than the database holds (a `palisade migrate` not yet run) cuts nothing: a server may keep
    /// events longer, never shorter.
    async fn instance_purge_allowed(&self) -> bool {
        let Some(configured) = self.policy.instance_audit_retention_days else { return true };
        let stored = match self.db.client().await {
            Ok(client) => audit_chain::instance_retention_days(&client).await,
            Err(err) => Err(err),
        };
        match stored {
            Ok(stored) if stored >= configured => true,
            Ok(stored) => {
                tracing::warn!(
                    database = stored,
                    configured,
                    "instance audit retention: the database holds a shorter one than configured; nothing purged \
                     (run `palisade migrate`)"
                );
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "instance audit retention failed; will retry tomorrow");
                false
            }
        }
    }

    /// The sequencer loop each server node runs: seal every `interval` (so an event is in its
    /// chain within about one interval of commit), checkpoint what is due. Runs until the task
    /// is dropped; failures are logged and retried.
    pub async fn run_audit_sequencer(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention: Option<OffsetDateTime> = None;
        loop {
            ticker.tick().await;
            // Retention runs once a day (and at start).
            let now = self.clock.now();
            if last_retention.is_none_or(|at| now - at >= time::Duration::days(1)) {
                last_retention = Some(now);
                if let Err(err) = self.apply_audit_retention().await {
                    tracing::warn!(error = %err, "audit retention failed; will retry tomorrow");
                }
            }
            if let Err(err) = self.seal_audit().await {
                tracing::warn!(error = %err, "audit sequencer: sealing failed; will retry");
                continue;
            }
            if let Err(err) = self.checkpoint_audit().await {
                tracing::warn!(error = %err, "audit sequencer: checkpoint failed; will retry");
            }
        }
    }

    /// One page of the organization's events, newest first (needs audit.read).
    pub async fn list_audit_events(
        &self,
        proof: &SessionProof,
        org: OrgId,
        pairs: &[(String, String)],
    ) -> Result<EventPage, AppError> {
        let mut query = parse_query(self, org, pairs)?;
        let limit = query.limit;
        query.limit += 1;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::AuditRead);
        let page = audit::list(&mut tx, query);
        let mut items = tx.run(&self.db).await?.get(page)?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|last| {
                let micros = (last.occurred_at.unix_timestamp_nanos() / 1000) as i64;
                let plain = serde_json::to_vec(&(micros, last.id)).unwrap_or_default();
                URL_SAFE_NO_PAD.encode(self.keys.seal(&plain, &cursor_context(org)))
            })
        } else {
            None
        };
        Ok(EventPage { items, next_cursor })
    }

    /// Starts an export (needs audit.export and a recent sign-in): records `export.requested`,
    /// then opens one snapshot of every matching event (see `AuditExport`).
    pub async fn start_audit_export(
        &self,
        proof: &SessionProof,
        org: OrgId,
        pairs: &[(String, String)],
        format: &str,
        meta: &RequestMeta,
    ) -> Result<AuditExport, AppError> {
        let query = parse_query(self, org, pairs)?;
        // Taken before anything is written: a refused export leaves no trace but the answer.
        let slot = self
            .export_slots
            .0
            .clone()
            .try_acquire_owned()
            .map_err(|_| AppError::Busy("Too many audit exports are running on this server; retry in a minute."))?;
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::AuditExport);
        palisade_store::repo::security::require_recent_auth(&mut tx, now, crate::STEP_UP_WINDOW);
        audit::record(
            &mut tx,
            self.audit("export.requested", meta).org(org).details(json!({"what": "audit_events", "format": format})),
        );
        tx.run(&self.db).await?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::AuditExport);
        let events = audit::export_events(tx, &self.db, query).await?;
        Ok(AuditExport { app: self.clone(), proof: *proof, org, events, _slot: slot })
    }

    /// Seals what is pending, then verifies the organization's whole chain (needs audit.read),
    /// against its stored checkpoints and any the caller kept.
    pub async fn verify_audit(&self, proof: &SessionProof, org: OrgId, kept: &[Anchor]) -> Result<Report, AppError> {
        // Only a caller who may read the log gets to trigger the sequencer.
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::AuditRead);
        tx.run(&self.db).await?;
        self.seal_audit().await?;
        let mut source = CallerChain { db: &self.db, proof, now: self.clock.now(), org };
        Ok(verify_chain(&mut source, org, kept).await?)
    }

    /// The organization's signed checkpoints, newest first (needs audit.read).
    pub async fn audit_checkpoints(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<Checkpoint>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::AuditRead);
        let list = audit_chain::checkpoints(&mut tx, org, 1000);
        Ok(tx.run(&self.db).await?.get(list)?)
    }
}
