//! Repositories: each function adds one prepared statement to a transaction and returns a typed
//! handle to its result. Tenant tables are only reachable through `Tx<Tenant>`.

pub mod audit;
pub mod orgs;
pub mod users;

use tokio_postgres::Row;

use crate::StoreError;

pub(crate) fn exactly_one(mut rows: Vec<Row>) -> Result<Row, StoreError> {
    if rows.len() == 1 { Ok(rows.remove(0)) } else { Err(StoreError::NotFound) }
}

pub(crate) fn ignore(_: Vec<Row>) -> Result<(), StoreError> {
    Ok(())
}

/// For writes that must touch exactly one row (UPDATE ... RETURNING 1): anything else is "not found".
pub(crate) fn one_row_touched(rows: Vec<Row>) -> Result<(), StoreError> {
    exactly_one(rows).map(|_| ())
}
