//! Data keys as stored: wrapped, with the provider's name for the wrapping key. An organization's
//! keys are a tenant table (reached only through its tenant check); the instance's are not.

use palisade_core::OrgId;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::pipeline::{Anonymous, Step, Tenant, Tx};

/// One stored data key.
#[derive(Debug, Clone)]
pub struct DataKeyRow {
    pub id: Uuid,
    pub wrapping_key: String,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub rewrapped_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
}

/// A key to store.
pub struct NewDataKey<'a> {
    pub id: Uuid,
    pub wrapping_key: &'a str,
    pub wrapped: &'a [u8],
    pub at: OffsetDateTime,
}

fn from_row(r: &Row) -> DataKeyRow {
    DataKeyRow {
        id: r.get(0),
        wrapping_key: r.get(1),
        wrapped: r.get(2),
        created_at: r.get(3),
        rewrapped_at: r.get(4),
        retired_at: r.get(5),
    }
}

const ORG_KEYS: &str = "SELECT id, wrapping_key, wrapped, created_at, rewrapped_at, retired_at \
    FROM palisade.org_data_keys WHERE tenant_id = $1 ORDER BY retired_at IS NULL DESC, created_at DESC, id";

/// The organization's data keys, the active one (if any) first.
pub fn org_keys(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Vec<DataKeyRow>> {
    tx.push(ORG_KEYS, vec![Box::new(org.as_uuid())], |rows| Ok(rows.iter().map(from_row).collect()))
}

// Two nodes may race to create an organization's first key: the loser's insert does nothing
// (the one-active index) and both then use the winner's.
const INSERT_ORG_KEY: &str = "INSERT INTO palisade.org_data_keys (tenant_id, id, wrapping_key, wrapped, created_at) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

pub fn insert_org_key(tx: &mut Tx<Tenant>, org: OrgId, key: NewDataKey<'_>) {
    tx.push_write(
        INSERT_ORG_KEY,
        vec![
            Box::new(org.as_uuid()),
            Box::new(key.id),
            Box::new(key.wrapping_key.to_owned()),
            Box::new(key.wrapped.to_vec()),
            Box::new(key.at),
        ],
    );
}

const INSTANCE_KEYS: &str = "SELECT id, wrapping_key, wrapped, created_at, rewrapped_at, retired_at \
    FROM palisade.instance_data_keys ORDER BY retired_at IS NULL DESC, created_at DESC, id";

/// The instance's data keys, the active one (if any) first.
pub fn instance_keys(tx: &mut Tx<Anonymous>) -> Step<Vec<DataKeyRow>> {
    tx.push(INSTANCE_KEYS, vec![], |rows| Ok(rows.iter().map(from_row).collect()))
}

const INSERT_INSTANCE_KEY: &str = "INSERT INTO palisade.instance_data_keys (id, wrapping_key, wrapped, created_at) \
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

pub fn insert_instance_key(tx: &mut Tx<Anonymous>, key: NewDataKey<'_>) {
    tx.push_write(
        INSERT_INSTANCE_KEY,
        vec![Box::new(key.id), Box::new(key.wrapping_key.to_owned()), Box::new(key.wrapped.to_vec()), Box::new(key.at)],
    );
}
