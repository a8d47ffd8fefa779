//! Tenant-scoped reads too large for one flight: one snapshot, its rows taken in batches.
//!
//! `Tx<Tenant>::stream` sends BEGIN (REPEATABLE READ, READ ONLY), the transaction's steps
//! (`enter_tenant` and any `require`, checked in the database as for every `Tx<Tenant>`) and then
//! one query, whose rows PostgreSQL produces as the caller takes them (tokio-postgres stops
//! reading the socket while a batch is unclaimed, so a slow reader slows the database down
//! instead of filling memory). Why one query and not pages: for a whole organization's audit log
//! PostgreSQL then plans one hash join and sort, where keyset pages each cost an index scan and
//! a lookup per row (half the rate).
//!
//! Invariant kept from `pipeline`: no pooled connection is handed back inside a transaction.
//! The last batch commits and returns the connection; a stream dropped before its end (client
//! gone, error, caller refused) takes its connection out of the pool and closes it, and
//! PostgreSQL rolls back. READ ONLY makes a write slipped into the steps fail instead of commit.

use std::pin::Pin;

use futures::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::Db;
use crate::error::StoreError;
use crate::pipeline::{Param, Tenant, Tx};

const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
// A streamed read is a large one: JIT would compile it (hundreds of ms) for a plan that spends
// its time in a hash join and a sort, not in expressions.
const NO_JIT: &str = "SELECT set_config('jit', 'off', true)";

/// The rows of one streamed query, taken in batches (see the module docs).
pub struct RowBatches {
    client: Option<deadpool_postgres::Object>,
    rows: Option<Pin<Box<RowStream>>>,
    ended: bool,
}

impl Tx<Tenant> {
    /// Runs this transaction's steps (their rows are not kept) inside a read-only snapshot, then
    /// starts `sql` and hands back its rows to be taken batch by batch.
    pub(crate) async fn stream(self, db: &Db, sql: &'static str, params: Vec<Param>) -> Result<RowBatches, StoreError> {
        let client = db.client().await?;
        let begin = client.prepare_cached(BEGIN_SNAPSHOT).await.map_err(StoreError::from_pg)?;
        let no_jit = client.prepare_cached(NO_JIT).await.map_err(StoreError::from_pg)?;
        let mut statements = Vec::new();
        for (sql, _) in self.steps() {
            statements.push(client.prepare_cached(sql).await.map_err(StoreError::from_pg)?);
        }
        let no_params: [&(dyn ToSql + Sync); 0] = [];
        let step_params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .steps()
            .map(|(_, params)| params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect())
            .collect();
        let mut flight = vec![client.query(&begin, &no_params), client.query(&no_jit, &no_params)];
        for (statement, params) in statements.iter().zip(&step_params) {
            flight.push(client.query(statement, params.as_slice()));
        }
        let outcomes = futures::future::join_all(flight).await;
        // From here on an early return drops `batches`, which closes the connection.
        let mut batches = RowBatches { client: Some(client), rows: None, ended: false };
        for outcome in outcomes {
            outcome.map_err(StoreError::from_pg)?;
        }
        let client = batches.client.as_ref().expect("set above");
        let rows = client
            .query_raw(sql, params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)))
            .await
            .map_err(StoreError::from_pg)?;
        batches.rows = Some(Box::pin(rows));
        Ok(batches)
    }
}

impl RowBatches {
    /// Up to `max` more rows; fewer only at the end, when the transaction has committed and the
    /// connection gone back to the pool. An empty batch means there is nothing more.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Row>, StoreError> {
        let mut batch = Vec::with_capacity(max.min(16_384));
        let Some(rows) = self.rows.as_mut().filter(|_| !self.ended) else {
            return Ok(batch);
        };
        while batch.len() < max {
            match rows.next().await {
                Some(row) => batch.push(row.map_err(StoreError::from_pg)?),
                None => {
                    // The connection goes back to the pool only once the snapshot is closed; if
                    // COMMIT fails, Drop closes it.
                    let client = self.client.as_ref().expect("a stream holds its connection until it ends");
                    client.batch_execute("COMMIT").await.map_err(StoreError::from_pg)?;
                    self.ended = true;
                    drop(self.client.take());
                    break;
                }
            }
        }
        Ok(batch)
    }
}

impl Drop for RowBatches {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Still inside the transaction: never back to the pool; closing it rolls back.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
