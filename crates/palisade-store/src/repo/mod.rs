//! Repositories: each function adds one prepared statement to a transaction and returns a typed
//! handle to its result. Tenant tables are only reachable through `Tx<Tenant>`.

pub mod api_keys;
pub mod audit;
pub mod audit_chain;
pub mod collections;
pub mod data_keys;
pub mod email_tokens;
pub mod key_rotation;
pub mod members;
pub mod mfa;
pub mod org_deletion;
pub mod orgs;
pub mod records;
pub mod roles;
pub mod secrets;
pub mod security;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod webauthn;

use tokio_postgres::Row;

use crate::StoreError;

pub(crate) fn exactly_one(mut rows: Vec<Row>) -> Result<Row, StoreError> {
    if rows.len() == 1 { Ok(rows.remove(0)) } else { Err(StoreError::NotFound) }
}
