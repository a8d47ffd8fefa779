//! The verifiable audit trail: reading an organization's hash chain, recomputing it (the same
//! encoding as `palisade.audit_hash`, documented in docs/audit.md), the sequencer's entry points,
//! signed checkpoints and the instance's signing keys.

use palisade_core::OrgId;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::pipeline::{Step, Tenant, Tx};

pub const ZERO_HASH: [u8; 32] = [0; 32];

/// The chain of the events that belong to no organization (sign-up, sign-in, lockouts, …): it
/// is named by the nil UUID, which no organization has (0040).
pub fn instance_chain() -> OrgId {
    OrgId::from_uuid(Uuid::nil())
}

/// Whether `chain` names the instance chain.
pub fn is_instance_chain(chain: OrgId) -> bool {
    chain.as_uuid().is_nil()
}

/// One position of a chain as stored, with the event it names (absent if the event row is
/// gone). The event's fields stay in the row as received: hashing reads them in place.
#[derive(Debug)]
pub struct ChainRow {
    pub seq: i64,
    row: Row,
}

impl ChainRow {
    /// The chain hash stored at this position.
    pub fn hash(&self) -> &[u8] {
        self.row.get(1)
    }

    /// The chain hash this position should have after `prev`; `None` when its event is gone.
    pub fn expected_hash(&self, prev: &[u8]) -> Option<[u8; 32]> {
        let id: Uuid = self.row.get::<_, Option<Uuid>>(2)?;
        let mut h = Sha256::new();
        h.update(b"palisade-audit-v1");
        h.update(self.seq.to_be_bytes());
        h.update(prev);
        h.update(id.as_bytes());
        h.update(self.row.get::<_, Uuid>(3).as_bytes());
        h.update(self.row.get::<_, i64>(4).to_be_bytes());
        for i in 5..15 {
            match self.row.get::<_, Option<&str>>(i) {
                None => h.update([0u8]),
                Some(text) => {
                    h.update([1u8]);
                    h.update((text.len() as u32).to_be_bytes());
                    h.update(text.as_bytes());
                }
            }
        }
        Some(h.finalize().into())
    }
}

/// Reads chain positions after `after` with their events; the event columns are the encoding's
/// inputs in its order: actor_kind, actor_id, action, target_kind, target_id, host(ip),
/// user_agent, request_id, outcome, details.
pub const CHAIN_PAGE: &str = const_format::concatcp!(CHAIN_ROWS, " LIMIT $3");

/// Every chain position after `$2` in order (for a cursor that reads the whole chain once).
pub const CHAIN_ROWS: &str = "SELECT c.seq, c.hash, e.id, e.tenant_id, \
        (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.actor_kind, e.actor_id::text, e.action, \
        e.target_kind, e.target_id::text, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details::text \
    FROM palisade.audit_chain c LEFT JOIN palisade.audit_events e ON e.id = c.event_id AND e.tenant_id = c.tenant_id \
    WHERE c.tenant_id = $1 AND c.seq > $2 ORDER BY c.seq";

/// `CHAIN_ROWS` for the instance chain (`$1` is its nil id): its events are those without a
/// tenant, hashed with the nil UUID in the organization field.
pub const CHAIN_ROWS_INSTANCE: &str = "SELECT c.seq, c.hash, e.id, \
        CASE WHEN e.id IS NOT NULL THEN '00000000-0000-0000-0000-000000000000'::uuid END, \
        (extract(epoch FROM e.occurred_at) * 1000000)::bigint, e.actor_kind, e.actor_id::text, e.action, \
        e.target_kind, e.target_id::text, host(e.ip), e.user_agent, e.request_id, e.outcome, e.details::text \
    FROM palisade.audit_chain c LEFT JOIN palisade.audit_events e ON e.id = c.event_id AND e.tenant_id IS NULL \
    WHERE c.tenant_id = $1 AND c.seq > $2 ORDER BY c.seq";

pub fn chain_row(row: Row) -> ChainRow {
    ChainRow { seq: row.get(0), row }
}

pub fn page(tx: &mut Tx<Tenant>, org: OrgId, after: i64, limit: i64) -> Step<Vec<ChainRow>> {
    tx.push(CHAIN_PAGE, vec![Box::new(org.as_uuid()), Box::new(after), Box::new(limit)], |rows| {
        Ok(rows.into_iter().map(chain_row).collect())
    })
}

/// Where an organization's kept chain starts and ends.
#[derive(Debug, Clone)]
pub struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub base_seq: i64,
    pub base_hash: Vec<u8>,
}

pub const HEAD: &str = "SELECT seq, hash, base_seq, base_hash FROM palisade.audit_chain_heads WHERE tenant_id = $1";

pub fn head(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Option<Head>> {
    tx.push(HEAD, vec![Box::new(org.as_uuid())], |rows| {
        Ok(rows.first().map(|r| Head { seq: r.get(0), hash: r.get(1), base_seq: r.get(2), base_hash: r.get(3) }))
    })
}

/// Events of the organization that are in no chain position although the sequencer has passed
/// them (rows added behind its back): all events, less those still pending, less the kept
/// chain's length. Counting keeps this cheap on long chains; the chain walk finds the rest.
/// (`OFFSET 0` keeps the NOT EXISTS a lookup per pending event in the event_id index: as an
/// anti-join the planner, which guesses many pending events, hashed the whole chain table.)
pub const UNCHAINED: &str = "SELECT \
      (SELECT count(*) FROM palisade.audit_events e WHERE e.tenant_id = $1) \
    - (SELECT count(*) FROM palisade.audit_events e WHERE e.tenant_id = $1 \
         AND e.xid >= (SELECT low_xid FROM palisade.audit_sealer WHERE id = 1) \
         AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = e.id OFFSET 0)) \
    - coalesce((SELECT h.seq - h.base_seq FROM palisade.audit_chain_heads h WHERE h.tenant_id = $1), 0)";

/// `UNCHAINED` for the instance chain (`$1` is its nil id): the events without a tenant.
pub const UNCHAINED_INSTANCE: &str = "SELECT \
      (SELECT count(*) FROM palisade.audit_events e WHERE e.tenant_id IS NULL) \
    - (SELECT count(*) FROM palisade.audit_events e WHERE e.tenant_id IS NULL \
         AND e.xid >= (SELECT low_xid FROM palisade.audit_sealer WHERE id = 1) \
         AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = e.id OFFSET 0)) \
    - coalesce((SELECT h.seq - h.base_seq FROM palisade.audit_chain_heads h WHERE h.tenant_id = $1), 0)";

pub fn unchained(tx: &mut Tx<Tenant>, org: OrgId) -> Step<i64> {
    tx.push(UNCHAINED, vec![Box::new(org.as_uuid())], |rows| Ok(rows.first().map(|r| r.get(0)).unwrap_or(0)))
}

/// A signed checkpoint as stored, with the public key that signed it.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: OffsetDateTime,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub public_key: Option<Vec<u8>>,
    /// `head` (where the chain ended when signed) or `truncation` (where it now starts).
    pub kind: String,
}

pub const CHECKPOINTS: &str = "SELECT c.seq, c.hash, c.signed_at, c.key_id, c.signature, k.public_key, c.kind \
    FROM palisade.audit_checkpoints c LEFT JOIN palisade.signing_keys k ON k.key_id = c.key_id \
    WHERE c.tenant_id = $1 ORDER BY c.seq DESC LIMIT $2";

pub fn checkpoint_row(r: &Row) -> Checkpoint {
    Checkpoint {
        seq: r.get(0),
        hash: r.get(1),
        signed_at: r.get(2),
        key_id: r.get(3),
        signature: r.get(4),
        public_key: r.get(5),
        kind: r.get(6),
    }
}

/// The newest checkpoints first.
pub fn checkpoints(tx: &mut Tx<Tenant>, org: OrgId, limit: i64) -> Step<Vec<Checkpoint>> {
    tx.push(CHECKPOINTS, vec![Box::new(org.as_uuid()), Box::new(limit)], |rows| {
        Ok(rows.iter().map(checkpoint_row).collect())
    })
}

/// The hash stored at one position of the chain.
pub const HASH_AT: &str = "SELECT hash FROM palisade.audit_chain WHERE tenant_id = $1 AND seq = $2";

pub fn hash_at(tx: &mut Tx<Tenant>, org: OrgId, seq: i64) -> Step<Option<Vec<u8>>> {
    tx.push(HASH_AT, vec![Box::new(org.as_uuid()), Box::new(seq)], |rows| Ok(rows.first().map(|r| r.get(0))))
}

/// Runs the sequencer once: seals the events of finished transactions (about `max` at most).
/// Returns how many it sealed (0 also when another node holds the sequencer).
pub async fn seal(client: &Client, max: i32) -> Result<i32, StoreError> {
    let row = client.query_one("SELECT palisade.seal_audit_events($1)", &[&max]).await.map_err(StoreError::from_pg)?;
    Ok(row.get(0))
}

/// Chain heads due for a checkpoint.
pub async fn due_checkpoints(
    client: &Client,
    now: OffsetDateTime,
    every_events: i64,
    every: std::time::Duration,
    max: i32,
) -> Result<Vec<(OrgId, i64, Vec<u8>)>, StoreError> {
    let rows = client
        .query(
            "SELECT tenant_id, seq, hash FROM palisade.due_checkpoints($1, $2, make_interval(secs => $3), $4)",
            &[&now, &every_events, &every.as_secs_f64(), &max],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| (OrgId::from_uuid(r.get(0)), r.get(1), r.get(2))).collect())
}

pub struct NewCheckpoint<'a> {
    pub org: OrgId,
    pub seq: i64,
    pub hash: &'a [u8],
    pub signed_at: OffsetDateTime,
    pub key_id: &'a str,
    pub signature: &'a [u8],
}

pub async fn record_checkpoint(client: &Client, c: NewCheckpoint<'_>) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT palisade.record_checkpoint($1, $2, $3, $4, $5, $6)",
            &[&c.org.as_uuid(), &c.seq, &c.hash, &c.signed_at, &c.key_id, &c.signature],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(())
}

/// A stored signing key (private part sealed).
pub struct StoredKey {
    pub key_id: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
}

/// The newest unretired key for `purpose` ("audit" or "token").
pub async fn active_key(client: &Client, purpose: &str) -> Result<Option<StoredKey>, StoreError> {
    let row = client
        .query_opt(
            "SELECT key_id, public_key, sealed_private FROM palisade.signing_keys \
             WHERE purpose = $1 AND retired_at IS NULL ORDER BY created_at DESC, key_id LIMIT 1",
            &[&purpose],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.map(|r| StoredKey { key_id: r.get(0), public_key: r.get(1), sealed_private: r.get(2) }))
}

/// Adds `key` as the instance's audit signing key unless one is already active (another node
/// was first). Returns the id of the key that signs checkpoints from now on.
pub async fn add_audit_key(client: &Client, key: &StoredKey, at: OffsetDateTime) -> Result<String, StoreError> {
    let row = client
        .query_one(
            "SELECT palisade.add_audit_key($1, $2, $3, $4)",
            &[&key.key_id, &key.public_key, &key.sealed_private, &at],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.get(0))
}

/// What verifying a chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    /// Chain positions checked.
    pub events: i64,
    /// The first position that does not verify (a changed, missing or inserted event, or a gap).
    pub first_bad_seq: Option<i64>,
    /// Why, in words.
    pub reason: Option<String>,
}

/// Recomputes a chain position by position. Feed rows in order; the first fault sticks.
pub struct ChainVerifier {
    expected: i64,
    prev: Vec<u8>,
    events: i64,
    bad: Option<(i64, String)>,
}

impl ChainVerifier {
    /// Starts after `base_seq`, whose hash is `base_hash` (0 and zeros for an untruncated chain).
    pub fn new(base_seq: i64, base_hash: Vec<u8>) -> Self {
        Self { expected: base_seq + 1, prev: base_hash, events: 0, bad: None }
    }

    pub fn is_broken(&self) -> bool {
        self.bad.is_some()
    }

    /// The hash of the last position fed so far.
    pub fn last_hash(&self) -> &[u8] {
        &self.prev
    }

    pub fn feed(&mut self, row: &ChainRow) {
        if self.bad.is_some() {
            return;
        }
        if row.seq != self.expected {
            self.bad = Some((self.expected, format!("position {} is missing", self.expected)));
            return;
        }
        let Some(expected) = row.expected_hash(&self.prev) else {
            self.bad = Some((row.seq, format!("the event at position {} was deleted", row.seq)));
            return;
        };
        if expected.as_slice() != row.hash() {
            self.bad = Some((row.seq, format!("the event at position {} does not match its hash", row.seq)));
            return;
        }
        self.prev = row.hash().to_vec();
        self.expected += 1;
        self.events += 1;
    }

    /// Marks a fault found outside the row stream (head mismatch, stray events, checkpoints).
    pub fn fail(&mut self, seq: i64, reason: String) {
        if self.bad.is_none() {
            self.bad = Some((seq, reason));
        }
    }

    pub fn next_seq(&self) -> i64 {
        self.expected
    }

    pub fn verdict(self) -> Verdict {
        match self.bad {
            None => Verdict { valid: true, events: self.events, first_bad_seq: None, reason: None },
            Some((seq, reason)) => {
                Verdict { valid: false, events: self.events, first_bad_seq: Some(seq), reason: Some(reason) }
            }
        }
    }
}

/// The message a checkpoint signs (docs/audit.md, "Checkpoints").
pub fn checkpoint_message(org: OrgId, seq: i64, hash: &[u8], signed_at: OffsetDateTime) -> Vec<u8> {
    format!("palisade-audit-checkpoint-v1\n{org}\n{seq}\n{}\n{}", hex::encode(hash), checkpoint_time(signed_at))
        .into_bytes()
}

/// The message a truncation checkpoint signs: the chain of `org` now starts after `seq`.
pub fn truncation_message(org: OrgId, seq: i64, hash: &[u8], signed_at: OffsetDateTime) -> Vec<u8> {
    format!("palisade-audit-truncation-v1\n{org}\n{seq}\n{}\n{}", hex::encode(hash), checkpoint_time(signed_at))
        .into_bytes()
}

/// Organizations whose oldest kept events outlived their retention: where to cut each chain.
pub async fn retention_due(
    client: &Client,
    now: OffsetDateTime,
    max: i32,
) -> Result<Vec<(OrgId, i64, Vec<u8>)>, StoreError> {
    let rows = client
        .query("SELECT tenant_id, seq, hash FROM palisade.retention_due($1, $2)", &[&now, &max])
        .await
        .map_err(StoreError::from_pg)?;
    Ok(rows.iter().map(|r| (OrgId::from_uuid(r.get(0)), r.get(1), r.get(2))).collect())
}

/// Where to cut the instance chain, if its oldest kept events outlived the instance's retention
/// (`palisade.instance_audit`, which only the migrating role writes).
pub async fn instance_retention_due(
    client: &Client,
    now: OffsetDateTime,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    let row = client
        .query_opt("SELECT seq, hash FROM palisade.instance_retention_due($1)", &[&now])
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The instance chain's retention in days, as the database holds it.
pub async fn instance_retention_days(client: &Client) -> Result<i32, StoreError> {
    let row = client
        .query_one("SELECT retention_days FROM palisade.instance_audit", &[])
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.get(0))
}

/// Cuts the instance chain at `c.seq` (rules in `palisade.purge_instance_audit`); `c.org` is
/// not sent (the chain is fixed). Returns how many events were deleted.
pub async fn purge_instance(client: &Client, c: NewCheckpoint<'_>) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT palisade.purge_instance_audit($1, $2, $3, $4, $5)",
            &[&c.seq, &c.hash, &c.signed_at, &c.key_id, &c.signature],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.get(0))
}

/// Cuts a chain at `seq` under a signed truncation checkpoint (rules in `palisade.purge_audit`).
/// Returns how many events were deleted.
pub async fn purge(client: &Client, c: NewCheckpoint<'_>) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT palisade.purge_audit($1, $2, $3, $4, $5, $6)",
            &[&c.org.as_uuid(), &c.seq, &c.hash, &c.signed_at, &c.key_id, &c.signature],
        )
        .await
        .map_err(StoreError::from_pg)?;
    Ok(row.get(0))
}

/// UTC, microseconds, always six digits: `2026-11-30T16:15:52.123456Z`.
pub fn checkpoint_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}
