//! Records of a collection. Which rows a caller reaches is decided by the records table's
//! policies (tenant, then scope: see migration 0010), so none of these statements filters by
//! creator or assignee: a statement that forgot to could not leak anyway.
//!
//! Filters and sorts are data, not SQL: every statement here is static and prepared; field names,
//! operators and values travel as parameters (arrays for the filters).

use palisade_core::{CollectionName, OrgId, RecordId, UserId};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::pipeline::{Step, Tenant, Tx};
use crate::repo::exactly_one;

pub struct Record {
    pub id: RecordId,
    /// The fields stored in clear (never the sensitive ones, which are in `sealed`).
    pub data: Value,
    /// The sensitive fields as one envelope under the organization's data key, if any.
    pub sealed: Option<Vec<u8>>,
    /// The names of the fields in `sealed`.
    pub sealed_fields: Vec<String>,
    pub version: i32,
    pub created_by: UserId,
    pub assignees: Vec<UserId>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The value of the sort field for list queries sorted by a field (for the next cursor).
    pub sort_key: Option<Value>,
}

fn from_row(row: &Row) -> Record {
    Record {
        id: RecordId::from_uuid(row.get(0)),
        data: row.get(1),
        version: row.get(2),
        created_by: UserId::from_uuid(row.get(3)),
        assignees: row.get::<_, Vec<Uuid>>(4).into_iter().map(UserId::from_uuid).collect(),
        created_at: row.get(5),
        updated_at: row.get(6),
        sort_key: row.get(7),
        sealed: row.get(8),
        sealed_fields: row.get(9),
    }
}

macro_rules! columns {
    () => {
        "r.id, r.data, r.version, r.created_by, r.assignees, r.created_at, r.updated_at"
    };
}

const LOCK_COLLECTION: &str = "SELECT palisade.lock_collection($1, $2)";
const LOCK_RECORD: &str = "SELECT palisade.lock_record($1, $2, $3)";
const REQUIRE_MEMBERS: &str = "SELECT palisade.require_members($1)";
const REQUIRE_QUOTA: &str = "SELECT palisade.require_record_quota($1, $2, $3)";

fn uuids(users: &[UserId]) -> Vec<Uuid> {
    users.iter().map(|u| u.as_uuid()).collect()
}

/// An organization's record limits.
#[derive(Debug, Clone, Copy)]
pub struct RecordQuota {
    pub records: i64,
    pub bytes: i64,
}

pub struct NewRecord<'a> {
    pub quota: RecordQuota,
    pub org: OrgId,
    pub collection: &'a CollectionName,
    /// The schema (`Collection::schema_id`) `data` was validated against.
    pub schema_id: Uuid,
    pub id: RecordId,
    /// The fields stored in clear.
    pub data: &'a Value,
    pub sealed: &'a SealedFields,
    /// `data`'s serialized size in bytes, for the byte quota.
    pub size: i64,
    pub assignees: &'a [UserId],
    pub at: OffsetDateTime,
}

const INSERT: &str = concat!(
    "INSERT INTO palisade.records AS r \
     (tenant_id, id, collection, data, created_by, assignees, created_at, updated_at, sealed, sealed_fields) \
     VALUES ($1, $2, $3, $4, palisade.current_user_id(), $5, $6, $6, $7, $8) RETURNING ",
    columns!(),
    ", NULL::jsonb, r.sealed, r.sealed_fields"
);

/// Creates a record, provided the schema it was checked against is still current (PASC1) and
/// every assignee is a member (PAAS1).
pub fn create(tx: &mut Tx<Tenant>, record: NewRecord<'_>) -> Step<Record> {
    let collection = record.collection.as_str().to_owned();
    tx.push_write(LOCK_COLLECTION, vec![Box::new(collection.clone()), Box::new(record.schema_id)]);
    tx.push_write(REQUIRE_MEMBERS, vec![Box::new(uuids(record.assignees))]);
    tx.push_write(
        REQUIRE_QUOTA,
        vec![Box::new(record.quota.records), Box::new(record.quota.bytes), Box::new(record.size)],
    );
    tx.push(
        INSERT,
        vec![
            Box::new(record.org.as_uuid()),
            Box::new(record.id.as_uuid()),
            Box::new(collection),
            Box::new(record.data.clone()),
            Box::new(uuids(record.assignees)),
            Box::new(record.at),
            Box::new(record.sealed.envelope.clone()),
            Box::new(record.sealed.fields.clone()),
        ],
        |rows| Ok(from_row(&exactly_one(rows)?)),
    )
}

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    ", NULL::jsonb, r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = $1 AND r.collection = $2 AND r.id = $3"
);

pub fn get(tx: &mut Tx<Tenant>, org: OrgId, collection: &CollectionName, id: RecordId) -> Step<Record> {
    tx.push(
        GET,
        vec![Box::new(org.as_uuid()), Box::new(collection.as_str().to_owned()), Box::new(id.as_uuid())],
        |rows| Ok(from_row(&exactly_one(rows)?)),
    )
}

/// A record's sensitive fields as stored: one envelope and the names in it (both empty when the
/// record has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedFields {
    pub envelope: Option<Vec<u8>>,
    pub fields: Vec<String>,
}

pub struct RecordChange<'a> {
    pub org: OrgId,
    pub collection: &'a CollectionName,
    pub schema_id: Uuid,
    pub id: RecordId,
    /// The version the change was computed from; the update fails (PAIM1) if it moved on.
    pub from_version: i32,
    pub data: &'a Value,
    pub sealed: &'a SealedFields,
    pub assignees: &'a [UserId],
    pub at: OffsetDateTime,
}

const UPDATE: &str = concat!(
    "UPDATE palisade.records r SET data = $4, assignees = $5, version = r.version + 1, updated_at = $6, \
     sealed = $7, sealed_fields = $8 \
     WHERE r.tenant_id = $1 AND r.collection = $2 AND r.id = $3 RETURNING ",
    columns!(),
    ", NULL::jsonb, r.sealed, r.sealed_fields"
);

/// Replaces a record's data and assignees (version + 1).
pub fn update(tx: &mut Tx<Tenant>, change: RecordChange<'_>) -> Step<Record> {
    let collection = change.collection.as_str().to_owned();
    tx.push_write(LOCK_COLLECTION, vec![Box::new(collection.clone()), Box::new(change.schema_id)]);
    tx.push_write(
        LOCK_RECORD,
        vec![Box::new(collection.clone()), Box::new(change.id.as_uuid()), Box::new(Some(change.from_version))],
    );
    tx.push_write(REQUIRE_MEMBERS, vec![Box::new(uuids(change.assignees))]);
    tx.push(
        UPDATE,
        vec![
            Box::new(change.org.as_uuid()),
            Box::new(collection),
            Box::new(change.id.as_uuid()),
            Box::new(change.data.clone()),
            Box::new(uuids(change.assignees)),
            Box::new(change.at),
            Box::new(change.sealed.envelope.clone()),
            Box::new(change.sealed.fields.clone()),
        ],
        |rows| Ok(from_row(&exactly_one(rows)?)),
    )
}

// The audit events of reads of single records' sensitive fields, many in one statement (see
// `palisade_app`'s access-event writer, which groups concurrent reads of one organization). The
// actor of each event is the caller its read transaction resolved, passed as a value: the policy
// binds only the tenant, as for every event (ARCHITECTURE.md, invariant 3).
const RECORD_SENSITIVE_ACCESSES: &str = "INSERT INTO palisade.audit_events \
    (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind, target_id, ip, user_agent, request_id, outcome, details) \
    SELECT e.id, $1, e.at, e.actor_kind, e.actor_id, \
        CASE WHEN e.shown THEN 'record.sensitive_read' ELSE 'record.sensitive_denied' END, \
        'record', e.target, e.ip, e.user_agent, e.request_id, CASE WHEN e.shown THEN 'success' ELSE 'denied' END, e.details \
    FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::uuid[], $6::bool[], $7::uuid[], $8::inet[], $9::text[], \
        $10::text[], $11::jsonb[]) AS e(id, at, actor_kind, actor_id, shown, target, ip, user_agent, request_id, details)";

/// One read of a record holding sensitive fields: shown in clear (`record.sensitive_read`) or
/// masked (`record.sensitive_denied`).
#[derive(Debug, Clone)]
pub struct SensitiveAccess {
    pub event: palisade_core::EventId,
    pub at: OffsetDateTime,
    /// `user` or `api_key`, and its id.
    pub actor: (&'static str, Uuid),
    pub shown: bool,
    pub record: RecordId,
    pub collection: String,
    /// The names of the sensitive fields the record holds.
    pub fields: Vec<String>,
    pub meta: crate::repo::audit::RequestMeta,
}

/// Writes the events of several sensitive reads in one organization with one statement. If it
/// fails, none is written.
pub fn record_sensitive_accesses(tx: &mut Tx<Tenant>, org: OrgId, accesses: &[SensitiveAccess]) {
    tx.push_write(
        RECORD_SENSITIVE_ACCESSES,
        vec![
            Box::new(org.as_uuid()),
            Box::new(accesses.iter().map(|a| a.event.as_uuid()).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.at).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.actor.0).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.actor.1).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.shown).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.record.as_uuid()).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.meta.ip).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.meta.user_agent.clone()).collect::<Vec<_>>()),
            Box::new(accesses.iter().map(|a| a.meta.request_id.clone()).collect::<Vec<_>>()),
            Box::new(
                accesses
                    .iter()
                    .map(|a| serde_json::json!({"collection": a.collection, "fields": a.fields}))
                    .collect::<Vec<_>>(),
            ),
        ],
    );
}

const DELETE: &str = "DELETE FROM palisade.records WHERE tenant_id = $1 AND collection = $2 AND id = $3";

/// Deletes a record the caller can see; with `expected_version`, only at that version (PAIM1).
pub fn delete(
    tx: &mut Tx<Tenant>,
    org: OrgId,
    collection: &CollectionName,
    id: RecordId,
    expected_version: Option<i32>,
) {
    let collection = collection.as_str().to_owned();
    tx.push_write(LOCK_RECORD, vec![Box::new(collection.clone()), Box::new(id.as_uuid()), Box::new(expected_version)]);
    tx.push_write(DELETE, vec![Box::new(org.as_uuid()), Box::new(collection), Box::new(id.as_uuid())]);
}

/// One filter condition: `op` is one of eq, ne, gt, gte, lt, lte, in (for `in`, `value` is an
/// array of the accepted values). Range operators only match values of the same JSON type.
pub struct Filter {
    pub field: String,
    pub op: &'static str,
    pub value: Value,
}

/// Where a page starts: after the record with this id (and, for a field sort, this sort key).
pub struct After {
    pub id: RecordId,
    pub key: Value,
}

pub struct ListQuery<'a> {
    pub org: OrgId,
    pub collection: &'a CollectionName,
    pub filters: &'a [Filter],
    /// A top-level field to sort by (records without it sort first); `None` sorts by id, which
    /// is creation order (UUIDv7).
    pub sort_field: Option<&'a str>,
    pub descending: bool,
    pub after: Option<After>,
    pub limit: i64,
}

macro_rules! filters {
    ($f:literal, $op:literal, $v:literal) => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM unnest(",
            $f,
            "::text[], ",
            $op,
            "::text[], ",
            $v,
            "::jsonb[]) AS f(field, op, value) WHERE NOT coalesce(CASE f.op \
               WHEN 'eq' THEN r.data -> f.field = f.value \
               WHEN 'ne' THEN r.data -> f.field <> f.value \
               WHEN 'in' THEN f.value @> jsonb_build_array(r.data -> f.field) \
               WHEN 'gt' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field > f.value \
               WHEN 'gte' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field >= f.value \
               WHEN 'lt' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field < f.value \
               WHEN 'lte' THEN jsonb_typeof(r.data -> f.field) = jsonb_typeof(f.value) AND r.data -> f.field <= f.value \
               ELSE false END, false))"
        )
    };
}

// Listing by id: the first page and the pages after a cursor are separate statements. One
// statement with `($3 IS NULL OR r.id > $3)` left the cursor out of the index condition in a
// generic plan: each later page scanned the organization's records from its first one. (The
// benchmark's 50 lists/s of 12-07 was JIT, not this: see the runtime role's settings, migrate.rs.)
// Both are read with `push_in_index_order`: records_by_collection's order, never a sort.
macro_rules! list_by_id {
    ($cursor:literal, $order:literal) => {
        concat!(
            "SELECT ",
            columns!(),
            ", NULL::jsonb, r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = $1 AND r.collection = $2",
            $cursor,
            filters!("$3", "$4", "$5"),
            " ORDER BY r.id ",
            $order,
            " LIMIT $6"
        )
    };
}
const LIST_BY_ID_ASC: &str = list_by_id!("", "ASC");
const LIST_BY_ID_ASC_AFTER: &str = list_by_id!(" AND r.id > $7", "ASC");
const LIST_BY_ID_DESC: &str = list_by_id!("", "DESC");
const LIST_BY_ID_DESC_AFTER: &str = list_by_id!(" AND r.id < $7", "DESC");
const LIST_BY_FIELD_ASC: &str = concat!(
    "SELECT ",
    columns!(),
    ", coalesce(r.data -> $3::text, 'null'::jsonb), r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = $1 AND r.collection = $2 \
     AND ($4::uuid IS NULL OR (coalesce(r.data -> $3::text, 'null'::jsonb), r.id) > ($5::jsonb, $4::uuid))",
    filters!("$6", "$7", "$8"),
    " ORDER BY coalesce(r.data -> $3::text, 'null'::jsonb), r.id LIMIT $9"
);
const LIST_BY_FIELD_DESC: &str = concat!(
    "SELECT ",
    columns!(),
    ", coalesce(r.data -> $3::text, 'null'::jsonb), r.sealed, r.sealed_fields FROM palisade.records r WHERE r.tenant_id = $1 AND r.collection = $2 \
     AND ($4::uuid IS NULL OR (coalesce(r.data -> $3::text, 'null'::jsonb), r.id) < ($5::jsonb, $4::uuid))",
    filters!("$6", "$7", "$8"),
    " ORDER BY coalesce(r.data -> $3::text, 'null'::jsonb) DESC, r.id DESC LIMIT $9"
);

/// One page of records, in the order asked for.
pub fn list(tx: &mut Tx<Tenant>, query: ListQuery<'_>) -> Step<Vec<Record>> {
    let fields: Vec<String> = query.filters.iter().map(|f| f.field.clone()).collect();
    let ops: Vec<&'static str> = query.filters.iter().map(|f| f.op).collect();
    let values: Vec<Value> = query.filters.iter().map(|f| f.value.clone()).collect();
    let org = Box::new(query.org.as_uuid());
    let collection = Box::new(query.collection.as_str().to_owned());
    let (after_id, after_key) = match query.after {
        Some(after) => (Some(after.id.as_uuid()), Some(after.key)),
        None => (None, None),
    };
    let decode = |rows: Vec<Row>| Ok(rows.iter().map(from_row).collect());
    match query.sort_field {
        None => {
            let mut params: Vec<crate::pipeline::Param> =
                vec![org, collection, Box::new(fields), Box::new(ops), Box::new(values), Box::new(query.limit)];
            let sql = match (after_id, query.descending) {
                (None, false) => LIST_BY_ID_ASC,
                (None, true) => LIST_BY_ID_DESC,
                (Some(after), descending) => {
                    params.push(Box::new(after));
                    if descending { LIST_BY_ID_DESC_AFTER } else { LIST_BY_ID_ASC_AFTER }
                }
            };
            tx.push_in_index_order(sql, params, decode)
        }
        Some(field) => {
            let sql = if query.descending { LIST_BY_FIELD_DESC } else { LIST_BY_FIELD_ASC };
            let params: Vec<crate::pipeline::Param> = vec![
                org,
                collection,
                Box::new(field.to_owned()),
                Box::new(after_id),
                Box::new(after_key),
                Box::new(fields),
                Box::new(ops),
                Box::new(values),
                Box::new(query.limit),
            ];
            tx.push(sql, params, decode)
        }
    }
}

// A record whose sealed part is unchanged passes NULL: its envelope is kept as it is.
const MIGRATE_DATA: &str = "UPDATE palisade.records r \
        SET data = m.data, version = r.version + 1, updated_at = $5, \
            sealed = CASE WHEN m.reseal THEN m.sealed ELSE r.sealed END, \
            sealed_fields = CASE WHEN m.reseal THEN f.fields ELSE r.sealed_fields END \
    FROM unnest($3::uuid[], $4::jsonb[], $6::boolean[], $7::bytea[], $8::text[]) AS m(id, data, reseal, sealed, fields_csv) \
    CROSS JOIN LATERAL (SELECT CASE WHEN m.fields_csv = '' THEN '{}'::text[] ELSE string_to_array(m.fields_csv, ',') END) AS f(fields) \
    WHERE r.tenant_id = $1 AND r.collection = $2 AND r.id = m.id";

/// A record rewritten by a schema change: defaults filled in, or sensitive fields moved
/// (`sealed: Some`) because the schema now marks other fields sensitive.
pub struct MigratedRecord {
    pub id: RecordId,
    pub data: Value,
    pub sealed: Option<SealedFields>,
}

/// Rewrites records a schema change touched (version + 1 each).
pub fn migrate_data(
    tx: &mut Tx<Tenant>,
    org: OrgId,
    collection: &CollectionName,
    changed: &[MigratedRecord],
    at: OffsetDateTime,
) {
    if changed.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = changed.iter().map(|m| m.id.as_uuid()).collect();
    let data: Vec<Value> = changed.iter().map(|m| m.data.clone()).collect();
    let reseal: Vec<bool> = changed.iter().map(|m| m.sealed.is_some()).collect();
    let envelopes: Vec<Option<Vec<u8>>> =
        changed.iter().map(|m| m.sealed.as_ref().and_then(|s| s.envelope.clone())).collect();
    // Field names are identifiers (no commas), so a comma list crosses unnest as one text.
    let fields: Vec<String> =
        changed.iter().map(|m| m.sealed.as_ref().map(|s| s.fields.join(",")).unwrap_or_default()).collect();
    tx.push_write(
        MIGRATE_DATA,
        vec![
            Box::new(org.as_uuid()),
            Box::new(collection.as_str().to_owned()),
            Box::new(ids),
            Box::new(data),
            Box::new(at),
            Box::new(reseal),
            Box::new(envelopes),
            Box::new(fields),
        ],
    );
}

const ALL_FOR_CHECK: &str = "SELECT r.id, r.version, r.data, r.sealed, r.sealed_fields FROM palisade.records r \
    WHERE r.tenant_id = $1 AND r.collection = $2 ORDER BY r.id";

/// A stored record as a schema change checks it.
pub struct StoredRecord {
    pub id: RecordId,
    pub version: i32,
    pub data: Value,
    pub sealed: SealedFields,
}

/// Every record of a collection, for checking them against a new schema.
pub fn all_for_check(tx: &mut Tx<Tenant>, org: OrgId, collection: &CollectionName) -> Step<Vec<StoredRecord>> {
    tx.push(ALL_FOR_CHECK, vec![Box::new(org.as_uuid()), Box::new(collection.as_str().to_owned())], |rows| {
        Ok(rows
            .iter()
            .map(|r| StoredRecord {
                id: RecordId::from_uuid(r.get(0)),
                version: r.get(1),
                data: r.get(2),
                sealed: SealedFields { envelope: r.get(3), fields: r.get(4) },
            })
            .collect())
    })
}

/// The fingerprint `lock_collection_for_change` recomputes: sha-256 (hex) over "id:version," of
/// every record in id order.
pub fn fingerprint(records: &[StoredRecord]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for StoredRecord { id, version, .. } in records {
        hasher.update(format!("{}:{},", id.as_uuid(), version).as_bytes());
    }
    hex::encode(hasher.finalize())
}
