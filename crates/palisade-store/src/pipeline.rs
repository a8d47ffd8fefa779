//! Transactions that reach PostgreSQL in one network flight.
//!
//! A `Tx` collects prepared statements; `run` prepares any not yet cached on the connection, then
//! sends BEGIN, every step and COMMIT without waiting between them. The scope marker says what the
//! first step proved: `Tenant` transactions start with `enter_tenant` (session + membership checked
//! in the database, tenant set), `Authenticated` with `enter_session`. Repository functions that
//! touch tenant tables take `&mut Tx<Tenant>`, so code that skips the check does not compile.
//!
//! Invariant: a transaction never spans a decision made in Rust. Because every message is queued
//! on the first poll, a request that is cancelled mid-way still sends COMMIT, and a pooled
//! connection is never handed back inside an open transaction.

use std::marker::PhantomData;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use palisade_core::{OrgId, Permission, SessionProof};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::StoreError;

/// No caller proof: sign-up and sign-in only reach instance tables.
pub struct Anonymous;
/// A verified session (`enter_session` ran first).
pub struct Authenticated;
/// A verified session and membership, tenant set (`enter_tenant` or `enter_new_tenant` ran first).
pub struct Tenant;

pub(crate) type Param = Box<dyn ToSql + Sync + Send>;
type Decoder<T> = fn(Vec<Row>) -> Result<T, StoreError>;

struct PendingStep {
    sql: &'static str,
    params: Vec<Param>,
}

/// A handle to the result of one step, decoded after the transaction committed. Decoding cannot
/// undo the commit: a check that must stop a write belongs in the SQL (a function that raises).
#[must_use = "a step's result is decoded only through Results::get"]
pub struct Step<T> {
    index: usize,
    decode: Decoder<T>,
}

/// The rows of every step of a committed transaction.
pub struct Results {
    rows: Vec<Option<Vec<Row>>>,
}

impl Results {
    pub fn get<T>(&mut self, step: Step<T>) -> Result<T, StoreError> {
        let rows = self.rows.get_mut(step.index).and_then(Option::take).unwrap_or_default();
        (step.decode)(rows)
    }
}

const INDEX_ORDER: &str = "SELECT set_config('enable_sort', 'off', true), \
    set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)";
const PLANNER_DEFAULTS: &str = "SELECT set_config('enable_sort', 'on', true), \
    set_config('enable_bitmapscan', 'on', true), set_config('enable_seqscan', 'on', true)";

/// A transaction being assembled. See the module docs.
pub struct Tx<S> {
    steps: Vec<PendingStep>,
    scope: PhantomData<S>,
}

const ENTER_SESSION: &str = "SELECT palisade.enter_session($1, $2)";
const ENTER_TENANT: &str = "SELECT palisade.enter_tenant($1, $2, $3)";
const ENTER_TENANT_KEY: &str = "SELECT palisade.enter_tenant_key($1, $2, $3, $4)";
const ENTER_NEW_TENANT: &str = "SELECT palisade.enter_new_tenant($1, $2, $3)";
const REQUIRE_PERMISSION: &str = "SELECT palisade.require_permission($1)";

/// The most steps one transaction may hold. `join_all` polls up to this many futures in order on
/// the first poll, which is what puts the messages on the wire in order.
const MAX_STEPS: usize = 28;

impl Tx<Anonymous> {
    pub fn anonymous() -> Self {
        Tx { steps: Vec::new(), scope: PhantomData }
    }
}

impl Tx<Authenticated> {
    pub fn session(proof: &SessionProof, now: OffsetDateTime) -> Self {
        let mut tx = Tx { steps: Vec::new(), scope: PhantomData };
        tx.push_raw(ENTER_SESSION, vec![Box::new(proof.to_db()), Box::new(now)]);
        tx
    }
}

impl Tx<Tenant> {
    /// Enters an existing organization: fails in the database unless the session is valid and
    /// its user is a member.
    /// An API key enters only its own organization, from an allowed address
    /// (`enter_tenant_key`).
    pub fn tenant(proof: &SessionProof, now: OffsetDateTime, org: OrgId) -> Self {
        let mut tx = Tx { steps: Vec::new(), scope: PhantomData };
        match proof {
            SessionProof::ApiKey { hash, ip } => tx.push_raw(
                ENTER_TENANT_KEY,
                vec![Box::new(hash.0.to_vec()), Box::new(now), Box::new(org.as_uuid()), Box::new(*ip)],
            ),
            _ => tx.push_raw(ENTER_TENANT, vec![Box::new(proof.to_db()), Box::new(now), Box::new(org.as_uuid())]),
        };
        tx
    }

    /// Claims a fresh tenant id for an organization being created by the session's user.
    pub fn new_tenant(proof: &SessionProof, now: OffsetDateTime, org: OrgId) -> Self {
        let mut tx = Tx { steps: Vec::new(), scope: PhantomData };
        tx.push_raw(ENTER_NEW_TENANT, vec![Box::new(proof.to_db()), Box::new(now), Box::new(org.as_uuid())]);
        tx
    }

    /// Aborts the transaction in the database unless the caller's role holds `permission`
    /// (`palisade.require_permission`, which reads the matrix `enter_tenant` loaded).
    pub fn require(&mut self, permission: Permission) {
        self.push_raw(REQUIRE_PERMISSION, vec![Box::new(permission.as_str())]);
    }
}

impl Tx<Tenant> {
    /// The permissions `enter_tenant` loaded for the caller (for shaping a response, e.g.
    /// masking sensitive fields; refusals happen in the database through `require`).
    pub fn permissions(&mut self) -> Step<Vec<Permission>> {
        self.push(CALLER_PERMISSIONS, vec![], |rows| {
            let list: Option<String> = rows.first().and_then(|r| r.get(0));
            Ok(list.unwrap_or_default().split(',').filter_map(Permission::parse).collect())
        })
    }

    /// The caller's permissions and identity (for an audit event written outside this
    /// transaction, see `palisade_app`'s access-event writer).
    pub fn caller(&mut self) -> Step<Caller> {
        self.push(CALLER, vec![], |rows| {
            let row = crate::repo::exactly_one(rows)?;
            let list: Option<String> = row.get(0);
            Ok(Caller {
                permissions: list.unwrap_or_default().split(',').filter_map(Permission::parse).collect(),
                user: row.get(1),
                api_key: row.get(2),
            })
        })
    }
}

// Our own statements reading back what enter_* wrote in this transaction: no verification needed
// here (palisade.setting is for policies and functions; a forged value would already have ended
// the transaction at the first policy that read it).
const CALLER_PERMISSIONS: &str = "SELECT current_setting('app.permissions', true)";
const CALLER: &str = "SELECT current_setting('app.permissions', true), \
    nullif(current_setting('app.user_id', true), '')::uuid, nullif(current_setting('app.api_key_id', true), '')::uuid";

/// Who a tenant transaction was entered for, as `enter_tenant` resolved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub permissions: Vec<Permission>,
    /// The session's user, or the user an API key acts for.
    pub user: Option<uuid::Uuid>,
    /// The API key the transaction was entered with, if any.
    pub api_key: Option<uuid::Uuid>,
}

impl Caller {
    /// The actor an audit event names: the API key if the caller used one, else the user.
    pub fn actor(&self) -> Option<(&'static str, uuid::Uuid)> {
        match (self.api_key, self.user) {
            (Some(key), _) => Some(("api_key", key)),
            (None, Some(user)) => Some(("user", user)),
            (None, None) => None,
        }
    }
}

impl<S> Tx<S> {
    fn push_raw(&mut self, sql: &'static str, params: Vec<Param>) -> usize {
        self.steps.push(PendingStep { sql, params });
        self.steps.len() - 1
    }

    /// The steps added so far, in order (`stream` sends them itself).
    pub(crate) fn steps(&self) -> impl Iterator<Item = (&'static str, &Vec<Param>)> {
        assert!(self.steps.len() <= MAX_STEPS, "a transaction holds at most {MAX_STEPS} steps");
        self.steps.iter().map(|step| (step.sql, &step.params))
    }

    /// The statements added so far, in order (for tests of what a transaction sends).
    #[cfg(test)]
    pub(crate) fn statements(&self) -> Vec<&'static str> {
        self.steps.iter().map(|step| step.sql).collect()
    }

    /// Adds a write whose result nobody reads. Any check it needs must raise inside the SQL,
    /// which aborts the transaction (see `palisade.require_found`).
    pub(crate) fn push_write(&mut self, sql: &'static str, params: Vec<Param>) {
        self.push_raw(sql, params);
    }

    /// Adds a statement; its rows are decoded by `decode` after commit.
    pub(crate) fn push<T>(&mut self, sql: &'static str, params: Vec<Param>, decode: Decoder<T>) -> Step<T> {
        let index = self.push_raw(sql, params);
        Step { index, decode }
    }

    /// Adds a page read that must follow its index in the order asked for, reading a page's
    /// worth of rows, whatever the planner's statistics say. A pooled connection caches one
    /// generic plan per statement, estimated for no organization in particular: for the average
    /// organization of a shared instance (a few rows) the cheapest read was every row of the
    /// organization and a sort, which for a big one costs its size on every page (make bench:
    /// ~330 ms per page at 20,000 records). Sorting and whole-table or bitmap reads are switched
    /// off around the statement (`set_config(…, true)`: this transaction only; the first
    /// execution's plan is made under them, so the cached plan keeps to the index) and back on
    /// after it: Palisade's connections run the planner's defaults.
    pub(crate) fn push_in_index_order<T>(
        &mut self,
        sql: &'static str,
        params: Vec<Param>,
        decode: Decoder<T>,
    ) -> Step<T> {
        self.push_raw(INDEX_ORDER, Vec::new());
        let step = self.push(sql, params, decode);
        self.push_raw(PLANNER_DEFAULTS, Vec::new());
        step
    }

    /// Sends BEGIN, every step and COMMIT in one flight and returns the rows of each step.
    /// The first failing step's error is returned; PostgreSQL has then rolled everything back.
    /// A single step is sent alone: one statement is a transaction by itself (atomic, rolled
    /// back when it raises), so BEGIN and COMMIT would only cost two more messages.
    pub async fn run(self, db: &Db) -> Result<Results, StoreError> {
        assert!(self.steps.len() <= MAX_STEPS, "a transaction holds at most {MAX_STEPS} steps");
        let client = db.pool.get().await?;
        if let [step] = self.steps.as_slice() {
            let statement = client.prepare_cached(step.sql).await.map_err(StoreError::from_pg)?;
            let params: Vec<&(dyn ToSql + Sync)> =
                step.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&statement, params.as_slice()).await.map_err(StoreError::from_pg)?;
            return Ok(Results { rows: vec![Some(rows)] });
        }
        // Every statement is prepared before the flight: an unprepared one would be parsed on
        // the fly and could overtake BEGIN.
        let begin = client.prepare_cached("BEGIN").await.map_err(StoreError::from_pg)?;
        let commit = client.prepare_cached("COMMIT").await.map_err(StoreError::from_pg)?;
        let mut statements = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            statements.push(client.prepare_cached(step.sql).await.map_err(StoreError::from_pg)?);
        }
        let no_params: [&(dyn ToSql + Sync); 0] = [];
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .steps
            .iter()
            .map(|step| step.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect())
            .collect();
        let mut flight = Vec::with_capacity(self.steps.len() + 2);
        flight.push(client.query(&begin, &no_params));
        for (statement, params) in statements.iter().zip(&params) {
            flight.push(client.query(statement, params.as_slice()));
        }
        flight.push(client.query(&commit, &no_params));
        let mut outcomes = futures::future::join_all(flight).await;
        let commit_outcome = outcomes.pop();
        outcomes.remove(0).map_err(StoreError::from_pg)?;
        let mut rows = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            rows.push(Some(outcome.map_err(StoreError::from_pg)?));
        }
        match commit_outcome {
            Some(Ok(_)) => Ok(Results { rows }),
            Some(Err(err)) => Err(StoreError::from_pg(err)),
            None => Err(StoreError::Unavailable("commit result missing".into())),
        }
    }
}

/// The runtime connection pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool of up to `max_connections` to `config`, over TLS where the policy says so (`crate::tls`).
    pub fn connect(config: tokio_postgres::Config, max_connections: usize) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            crate::tls::with_policy(config),
            crate::tls::connector(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    /// A client for checks and maintenance that are not part of a request.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The newest migration applied, or an error when the database is unreachable.
    pub async fn applied_migration_version(&self) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM palisade.schema_migrations", &[])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(row.get(0))
    }
}
