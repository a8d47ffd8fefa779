//! Key status and rotation for the instance (no session): each call is one of the key keeper's
//! checked functions (migration 0022), which never enter an organization.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::pipeline::{Anonymous, Step, Tx};
use crate::repo::exactly_one;

/// One of an organization's data keys as the key keeper sees it.
#[derive(Debug, Clone)]
pub struct OrgKeyRow {
    pub key: crate::repo::data_keys::DataKeyRow,
    /// Stored values (records' sensitive fields, secrets) it still encrypts.
    pub values_left: i64,
}

const KEY_WORK_DUE: &str = "SELECT tenant_id FROM palisade.key_work_due($1, make_interval(secs => $2), $3)";

/// Organizations with a rotation still re-encrypting or an active key older than `period`.
pub fn key_work_due(tx: &mut Tx<Anonymous>, now: OffsetDateTime, period: Duration, max: i32) -> Step<Vec<Uuid>> {
    tx.push(KEY_WORK_DUE, vec![Box::new(now), Box::new(period.as_seconds_f64()), Box::new(max)], |rows| {
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
}

const ORGS_WITH_KEYS: &str = "SELECT tenant_id, name FROM palisade.orgs_with_keys()";

pub fn orgs_with_keys(tx: &mut Tx<Anonymous>) -> Step<Vec<(Uuid, String)>> {
    tx.push(ORGS_WITH_KEYS, vec![], |rows| Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

const ORG_KEY_ROWS: &str = "SELECT id, wrapping_key, wrapped, created_at, rewrapped_at, retired_at, values_left \
    FROM palisade.org_key_rows($1, $2)";

fn decode_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<OrgKeyRow>, crate::StoreError> {
    Ok(rows
        .iter()
        .map(|r| OrgKeyRow {
            key: crate::repo::data_keys::DataKeyRow {
                id: r.get(0),
                wrapping_key: r.get(1),
                wrapped: r.get(2),
                created_at: r.get(3),
                rewrapped_at: r.get(4),
                retired_at: r.get(5),
            },
            values_left: r.get(6),
        })
        .collect())
}

/// An organization's data keys, the active one first, with the values each still encrypts.
pub fn org_key_rows<S>(tx: &mut Tx<S>, org: Uuid) -> Step<Vec<OrgKeyRow>> {
    tx.push(ORG_KEY_ROWS, vec![Box::new(org), Box::new(true)], decode_rows)
}

/// The same without counting values (`values_left` is 0): for the rotation job's batches.
pub fn org_keys_uncounted(tx: &mut Tx<Anonymous>, org: Uuid) -> Step<Vec<OrgKeyRow>> {
    tx.push(ORG_KEY_ROWS, vec![Box::new(org), Box::new(false)], decode_rows)
}

/// A new data key to rotate to (already wrapped by the provider).
pub struct Rotation<'a> {
    pub org: Uuid,
    pub id: Uuid,
    pub wrapping_key: &'a str,
    pub wrapped: &'a [u8],
    pub at: OffsetDateTime,
    pub event: Uuid,
    /// `scheduled` or `on demand`.
    pub reason: &'a str,
}

const START: &str = "SELECT palisade.start_key_rotation($1, $2, $3, $4, $5, $6, $7)";

/// Makes the new key active and retires the old one (PAKR1, a conflict, while a rotation is re-encrypting).
/// Returns the retired key's id (none for an organization's first key).
pub fn start_rotation(tx: &mut Tx<Anonymous>, rotation: Rotation<'_>) -> Step<Option<Uuid>> {
    tx.push(
        START,
        vec![
            Box::new(rotation.org),
            Box::new(rotation.id),
            Box::new(rotation.wrapping_key.to_owned()),
            Box::new(rotation.wrapped.to_vec()),
            Box::new(rotation.at),
            Box::new(rotation.event),
            Box::new(rotation.reason.to_owned()),
        ],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}

/// A stored value to re-encrypt: `kind` is `record` or `secret`.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub kind: String,
    pub id: Uuid,
    pub sealed: Vec<u8>,
}

const BATCH: &str = "SELECT kind, id, sealed FROM palisade.rotation_batch($1, $2, $3)";

pub fn rotation_batch(tx: &mut Tx<Anonymous>, org: Uuid, key: Uuid, limit: i32) -> Step<Vec<SealedValue>> {
    tx.push(BATCH, vec![Box::new(org), Box::new(key), Box::new(limit)], |rows| {
        Ok(rows.iter().map(|r| SealedValue { kind: r.get(0), id: r.get(1), sealed: r.get(2) }).collect())
    })
}

const APPLY: &str = "SELECT palisade.rotation_apply($1, $2, $3, $4, $5)";

/// Replaces each value that still holds what was read; returns how many were replaced.
pub fn rotation_apply(tx: &mut Tx<Anonymous>, org: Uuid, values: &[SealedValue], resealed: Vec<Vec<u8>>) -> Step<i32> {
    let kinds: Vec<String> = values.iter().map(|v| v.kind.clone()).collect();
    let ids: Vec<Uuid> = values.iter().map(|v| v.id).collect();
    let old: Vec<Vec<u8>> = values.iter().map(|v| v.sealed.clone()).collect();
    tx.push(APPLY, vec![Box::new(org), Box::new(kinds), Box::new(ids), Box::new(old), Box::new(resealed)], |rows| {
        Ok(exactly_one(rows)?.get(0))
    })
}

const FINISH: &str = "SELECT palisade.finish_key_rotation($1, $2, $3, $4, make_interval(secs => $5))";

/// Deletes retired key `key` once nothing is stored under it and it was retired at least
/// `min_age` ago (longer than any node caches a key); false until both hold.
pub fn finish_rotation(
    tx: &mut Tx<Anonymous>,
    org: Uuid,
    key: Uuid,
    at: OffsetDateTime,
    event: Uuid,
    min_age: Duration,
) -> Step<bool> {
    tx.push(
        FINISH,
        vec![Box::new(org), Box::new(key), Box::new(at), Box::new(event), Box::new(min_age.as_seconds_f64())],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}

/// A data key moving to a new wrapping key (KEK rotation).
pub struct Rewrap<'a> {
    pub id: Uuid,
    pub from: &'a str,
    pub to: &'a str,
    pub wrapped: &'a [u8],
    pub at: OffsetDateTime,
}

const REWRAP_ORG: &str = "SELECT palisade.rewrap_org_key($1, $2, $3, $4, $5, $6, $7)";

pub fn rewrap_org_key(tx: &mut Tx<Anonymous>, org: Uuid, rewrap: Rewrap<'_>, event: Uuid) -> Step<bool> {
    tx.push(
        REWRAP_ORG,
        vec![
            Box::new(org),
            Box::new(rewrap.id),
            Box::new(rewrap.from.to_owned()),
            Box::new(rewrap.to.to_owned()),
            Box::new(rewrap.wrapped.to_vec()),
            Box::new(rewrap.at),
            Box::new(event),
        ],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}

const REWRAP_INSTANCE: &str = "UPDATE palisade.instance_data_keys SET wrapping_key = $3, wrapped = $4, rewrapped_at = $5 \
    WHERE id = $1 AND wrapping_key = $2";

pub fn rewrap_instance_key(tx: &mut Tx<Anonymous>, rewrap: Rewrap<'_>) {
    tx.push_write(
        REWRAP_INSTANCE,
        vec![
            Box::new(rewrap.id),
            Box::new(rewrap.from.to_owned()),
            Box::new(rewrap.to.to_owned()),
            Box::new(rewrap.wrapped.to_vec()),
            Box::new(rewrap.at),
        ],
    );
}
