//! PostgreSQL: the pool, migrations, tenant-scoped pipelined transactions and repositories.
//! The store never decides authorization; it carries the caller's proof into the database,
//! where the `enter_*` functions check it.

pub mod catalog;
mod error;
pub mod migrate;
mod pipeline;
pub mod repo;
mod stream;
pub mod tls;

pub use error::StoreError;
pub use pipeline::{Anonymous, Authenticated, Db, Results, Step, Tenant, Tx};
pub use stream::RowBatches;
