//! An organization's write-only secrets: stored sealed, listed by name and metadata only. The
//! sealed value is read back only by the server's own consumers (connectors, webhooks).

use palisade_core::{OrgId, SecretId, UserId};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::pipeline::{Step, Tenant, Tx};
use crate::repo::exactly_one;

/// A secret as lists show it: never its value.
#[derive(Debug, Clone)]
pub struct SecretRow {
    pub id: SecretId,
    pub name: String,
    pub version: i32,
    /// The data key that sealed the current value (key status and rotation progress).
    pub key_id: Option<uuid::Uuid>,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub updated_by: Option<UserId>,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "s.id, s.name, s.version, CASE WHEN length(s.sealed) >= 17 \
    THEN encode(substring(s.sealed FROM 2 FOR 16), 'hex')::uuid END, s.created_by, s.created_at, s.updated_by, s.updated_at";

fn from_row(r: &Row) -> SecretRow {
    SecretRow {
        id: SecretId::from_uuid(r.get(0)),
        name: r.get(1),
        version: r.get(2),
        key_id: r.get(3),
        created_by: r.get::<_, Option<uuid::Uuid>>(4).map(UserId::from_uuid),
        created_at: r.get(5),
        updated_by: r.get::<_, Option<uuid::Uuid>>(6).map(UserId::from_uuid),
        updated_at: r.get(7),
    }
}

// The author is the transaction's verified user, never a parameter. A taken name raises a
// unique violation, which the caller reports as a conflict.
const INSERT: &str = const_format::concatcp!(
    "INSERT INTO palisade.secrets AS s (tenant_id, id, name, sealed, created_by, created_at, updated_by, updated_at) \
     VALUES ($1, $2, $3, $4, palisade.current_user_id(), $5, palisade.current_user_id(), $5) RETURNING ",
    COLUMNS
);

/// Stores a new secret (already sealed, bound to `id`).
pub fn create(
    tx: &mut Tx<Tenant>,
    org: OrgId,
    id: SecretId,
    name: &str,
    sealed: Vec<u8>,
    at: OffsetDateTime,
) -> Step<SecretRow> {
    tx.push(
        INSERT,
        vec![
            Box::new(org.as_uuid()),
            Box::new(id.as_uuid()),
            Box::new(name.to_owned()),
            Box::new(sealed),
            Box::new(at),
        ],
        |rows| Ok(from_row(&exactly_one(rows)?)),
    )
}

const GET: &str =
    const_format::concatcp!("SELECT ", COLUMNS, " FROM palisade.secrets s WHERE s.tenant_id = $1 AND s.name = $2");

pub fn get(tx: &mut Tx<Tenant>, org: OrgId, name: &str) -> Step<SecretRow> {
    tx.push(GET, vec![Box::new(org.as_uuid()), Box::new(name.to_owned())], |rows| Ok(from_row(&exactly_one(rows)?)))
}

const REPLACE: &str = const_format::concatcp!(
    "UPDATE palisade.secrets s SET sealed = $3, version = s.version + 1, updated_by = palisade.current_user_id(), \
     updated_at = $4 WHERE s.tenant_id = $1 AND s.id = $2 RETURNING ",
    COLUMNS
);

/// Replaces the value of secret `id` (sealed anew, bound to the same id).
pub fn replace(tx: &mut Tx<Tenant>, org: OrgId, id: SecretId, sealed: Vec<u8>, at: OffsetDateTime) -> Step<SecretRow> {
    tx.push(REPLACE, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid()), Box::new(sealed), Box::new(at)], |rows| {
        Ok(from_row(&exactly_one(rows)?))
    })
}

const DELETE: &str = "WITH d AS (DELETE FROM palisade.secrets WHERE tenant_id = $1 AND name = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";

pub fn delete(tx: &mut Tx<Tenant>, org: OrgId, name: &str) {
    tx.push_write(DELETE, vec![Box::new(org.as_uuid()), Box::new(name.to_owned())]);
}

const LIST: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM palisade.secrets s WHERE s.tenant_id = $1 ORDER BY s.name LIMIT 1000"
);

pub fn list(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Vec<SecretRow>> {
    tx.push(LIST, vec![Box::new(org.as_uuid())], |rows| Ok(rows.iter().map(from_row).collect()))
}

const SEALED: &str = "SELECT s.id, s.sealed FROM palisade.secrets s WHERE s.tenant_id = $1 AND s.name = $2";

/// The sealed value of a secret, for the server's own consumers (never an API response).
pub fn sealed_value(tx: &mut Tx<Tenant>, org: OrgId, name: &str) -> Step<(SecretId, Vec<u8>)> {
    tx.push(SEALED, vec![Box::new(org.as_uuid()), Box::new(name.to_owned())], |rows| {
        let row = exactly_one(rows)?;
        Ok((SecretId::from_uuid(row.get(0)), row.get(1)))
    })
}
