//! Collections: an organization's named record types, each with a versioned JSON Schema. The
//! schema is checked in Rust (palisade-app); the locks that keep records and schema in step are
//! SQL functions (`lock_collection`, `lock_collection_for_change`).

use palisade_core::{CollectionName, OrgId};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::pipeline::{Step, Tenant, Tx};
use crate::repo::exactly_one;

pub struct Collection {
    pub name: String,
    pub schema: Value,
    pub version: i32,
    /// Changes with every schema; writers name it to prove they checked the current schema.
    pub schema_id: Uuid,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

fn from_row(row: &Row) -> Collection {
    Collection {
        name: row.get(0),
        schema: row.get(1),
        version: row.get(2),
        schema_id: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
    }
}

const COLUMNS: &str = "name, schema, version, schema_id, created_at, updated_at";

const REQUIRE_QUOTA: &str = "SELECT palisade.require_collection_quota($1)";
const INSERT: &str = "INSERT INTO palisade.collections \
        (tenant_id, name, schema, version, schema_id, created_by, created_at, updated_at) \
    VALUES ($1, $2, $3, 1, $5, palisade.current_user_id(), $4, $4)";
const INSERT_VERSION: &str = "INSERT INTO palisade.collection_versions \
        (tenant_id, name, version, schema, created_by, created_at) \
    SELECT tenant_id, name, version, schema, palisade.current_user_id(), updated_at \
    FROM palisade.collections WHERE tenant_id = $1 AND name = $2";

pub struct NewCollection<'a> {
    pub org: OrgId,
    pub name: &'a CollectionName,
    pub schema: &'a Value,
    pub schema_id: Uuid,
    pub at: OffsetDateTime,
    /// The most collections the organization may hold.
    pub quota: i32,
}

/// Creates a collection at version 1, within the organization's collection quota (PAQ01).
pub fn create(tx: &mut Tx<Tenant>, new: NewCollection<'_>) {
    let (org, name) = (new.org, new.name);
    tx.push_write(REQUIRE_QUOTA, vec![Box::new(new.quota)]);
    tx.push_write(
        INSERT,
        vec![
            Box::new(org.as_uuid()),
            Box::new(name.as_str().to_owned()),
            Box::new(new.schema.clone()),
            Box::new(new.at),
            Box::new(new.schema_id),
        ],
    );
    tx.push_write(INSERT_VERSION, vec![Box::new(org.as_uuid()), Box::new(name.as_str().to_owned())]);
}

const GET: &str =
    const_format::concatcp!("SELECT ", COLUMNS, " FROM palisade.collections WHERE tenant_id = $1 AND name = $2");

pub fn get(tx: &mut Tx<Tenant>, org: OrgId, name: &CollectionName) -> Step<Collection> {
    tx.push(GET, vec![Box::new(org.as_uuid()), Box::new(name.as_str().to_owned())], |rows| {
        Ok(from_row(&exactly_one(rows)?))
    })
}

const LIST: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM palisade.collections WHERE tenant_id = $1 ORDER BY name LIMIT 1000"
);

pub fn list(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Vec<Collection>> {
    tx.push(LIST, vec![Box::new(org.as_uuid())], |rows| Ok(rows.iter().map(from_row).collect()))
}

const LOCK_FOR_CHANGE: &str = "SELECT palisade.lock_collection_for_change($1, $2, $3)";
const UPDATE_SCHEMA: &str = "UPDATE palisade.collections \
        SET schema = $3, version = version + 1, schema_id = $5, updated_at = $4 \
    WHERE tenant_id = $1 AND name = $2";

/// A schema change the caller checked every record against.
pub struct SchemaChange<'a> {
    pub org: OrgId,
    pub name: &'a CollectionName,
    pub schema: &'a Value,
    /// The schema the records were last checked under, and the new schema's id.
    pub from_schema: Uuid,
    pub new_schema_id: Uuid,
    /// `records::fingerprint` of the records that were checked.
    pub fingerprint: String,
    pub at: OffsetDateTime,
}

/// Replaces the schema (version + 1, history kept) unless the collection or its records changed
/// since they were checked (PASC1, see the migration).
pub fn change_schema(tx: &mut Tx<Tenant>, change: SchemaChange<'_>) {
    let name = change.name.as_str().to_owned();
    tx.push_write(
        LOCK_FOR_CHANGE,
        vec![Box::new(name.clone()), Box::new(change.from_schema), Box::new(change.fingerprint)],
    );
    tx.push_write(
        UPDATE_SCHEMA,
        vec![
            Box::new(change.org.as_uuid()),
            Box::new(name.clone()),
            Box::new(change.schema.clone()),
            Box::new(change.at),
            Box::new(change.new_schema_id),
        ],
    );
    tx.push_write(INSERT_VERSION, vec![Box::new(change.org.as_uuid()), Box::new(name)]);
}

const DELETE: &str = "WITH d AS (DELETE FROM palisade.collections WHERE tenant_id = $1 AND name = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";

/// Deletes an empty collection; one that still holds records is refused by the foreign key.
pub fn delete(tx: &mut Tx<Tenant>, org: OrgId, name: &CollectionName) {
    tx.push_write(DELETE, vec![Box::new(org.as_uuid()), Box::new(name.as_str().to_owned())]);
}
