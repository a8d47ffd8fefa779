//! Records: create, read, replace, merge-patch, delete, list. Every write checks the data against
//! the collection's current schema and names that schema to the database, which refuses the
//! write if the schema changed meanwhile. Which records a caller reaches is the database's
//! decision (T3, the records policy); the permission to act is checked in the same transaction.

use std::sync::Arc;

use palisade_core::{CollectionName, OrgId, Permission, RecordId, SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::collections;
use palisade_store::repo::records::{self, NewRecord, Record, RecordChange, SensitiveAccess};
use palisade_store::{StoreError, Tx};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::collections::parse_name;
use crate::schema::{CompiledSchema, RECORD_MAX_BYTES};
use crate::sealed_fields::{join, split};
use crate::{App, AppError};

/// A record as one caller may see it: fields marked sensitive are left out of `data` (and named
/// in `masked`) unless the caller holds records.sensitive_read.
pub struct RecordView {
    pub record: Record,
    pub masked: Vec<String>,
}

/// A record whose sensitive values were not opened (see `App::get_record_concealed`).
pub struct ConcealedRecord {
    pub view: RecordView,
    /// Sensitive fields the caller may reveal (present in the record, left sealed).
    pub concealed: Vec<String>,
}

/// What a create or replace sends.
pub struct RecordInput {
    pub data: Value,
    pub assignees: Vec<String>,
}

pub(crate) fn parse_assignees(raw: &[String]) -> Result<Vec<UserId>, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let mut users = Vec::new();
    if raw.len() > 100 {
        errors.push(ValidationError::new("assignees", "at most 100 assignees"));
    }
    for (i, text) in raw.iter().enumerate() {
        match text.parse::<UserId>() {
            Ok(user) if !users.contains(&user) => users.push(user),
            Ok(_) => errors.push(ValidationError::new(&format!("assignees/{i}"), "is listed twice")),
            Err(_) => errors.push(ValidationError::new(&format!("assignees/{i}"), "must be a user id (usr_…)")),
        }
    }
    if errors.is_empty() { Ok(users) } else { Err(errors) }
}

/// The serialized size of `data`, refused over the record limit or when not an object.
fn check_size(data: &Value) -> Result<usize, AppError> {
    let size = serde_json::to_vec(data).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > RECORD_MAX_BYTES {
        return Err(AppError::PayloadTooLarge(format!("the record is {size} bytes; the limit is {RECORD_MAX_BYTES}")));
    }
    if !data.is_object() {
        return Err(ValidationError::new("data", "must be a JSON object").into());
    }
    Ok(size)
}

/// Names of the top-level fields whose values differ (added, removed or changed), sorted.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut names: Vec<String> = b.keys().chain(a.keys()).filter(|k| b.get(*k) != a.get(*k)).cloned().collect();
    names.sort();
    names.dedup();
    names
}

/// Puts back the stored values of sensitive fields a caller could not see (and so could not
/// send back), so a replace by such a caller keeps them.
fn keep_hidden_fields(new: &mut Value, stored: &Value, schema: &CompiledSchema, permissions: &[Permission]) {
    if permissions.contains(&Permission::RecordsSensitiveRead) {
        return;
    }
    if let (Value::Object(new), Value::Object(stored)) = (new, stored) {
        for name in schema.sensitive_fields() {
            if let (false, Some(value)) = (new.contains_key(name), stored.get(name)) {
                new.insert(name.to_owned(), value.clone());
            }
        }
    }
}

impl App {
    /// The collection's current schema, read under the caller's own tenant check (so an error
    /// about it is only ever shown to someone who may see the collection).
    pub(crate) async fn fresh_schema(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &CollectionName,
    ) -> Result<(Uuid, Arc<CompiledSchema>), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        let found = collections::get(&mut tx, org, name);
        let collection = tx.run(&self.db).await?.get(found)?;
        let compiled = self
            .schemas
            .compiled(collection.schema_id, &collection.schema)
            .map_err(|_| AppError::Internal(format!("stored schema of {name} does not compile")))?;
        self.schemas.remember(org.as_uuid(), name.as_str(), collection.schema_id);
        Ok((collection.schema_id, compiled))
    }

    pub async fn create_record(
        &self,
        proof: &SessionProof,
        org: OrgId,
        collection: &str,
        input: RecordInput,
        meta: &RequestMeta,
    ) -> Result<RecordView, AppError> {
        let name = parse_name(collection)?;
        let size = check_size(&input.data)? as i64;
        let assignees = parse_assignees(&input.assignees).map_err(AppError::Validation)?;
        // Usually one round trip: check against the cached schema and name it; the database
        // refuses if it is stale, and then the fresh one is read and the write retried once.
        let mut cached = self.schemas.current(org.as_uuid(), name.as_str());
        for _attempt in 0..2 {
            let (schema_id, schema) = match cached.take() {
                Some((id, schema)) if schema.violations(&input.data).is_empty() => (id, schema),
                _ => self.fresh_schema(proof, org, &name).await?,
            };
            let violations = schema.violations(&input.data);
            if !violations.is_empty() {
                return Err(AppError::Validation(violations));
            }
            let id = RecordId::new(&*self.clock, &*self.random);
            let (clear, sensitive) = split(&input.data, &schema);
            let sealed = self.seal_fields(proof, org, id, &sensitive, Permission::RecordsCreate).await?;
            let now = self.clock.now();
            let mut tx = Tx::tenant(proof, now, org);
            tx.require(Permission::RecordsCreate);
            let permissions = tx.permissions();
            let created = records::create(
                &mut tx,
                NewRecord {
                    quota: self.policy.record_quota,
                    org,
                    collection: &name,
                    schema_id,
                    id,
                    data: &clear,
                    sealed: &sealed,
                    size,
                    assignees: &assignees,
                    at: now,
                },
            );
            audit::record(
                &mut tx,
                self.audit("record.created", meta)
                    .org(org)
                    .target("record", id.as_uuid())
                    .details(json!({"collection": name.as_str(), "fields": changed_fields(&json!({}), &input.data)})),
            );
            match tx.run(&self.db).await {
                Err(StoreError::SchemaChanged) => self.schemas.forget(org.as_uuid(), name.as_str()),
                other => {
                    let mut results = other?;
                    let permissions = results.get(permissions)?;
                    return self.present(proof, org, results.get(created)?, &schema, &permissions).await;
                }
            }
        }
        Err(AppError::Conflict("the collection's schema is changing; retry".into()))
    }

    /// Reads one record. If it holds sensitive fields, whether they were shown or masked is
    /// written to the audit log before anything is returned (`access_events`: grouped with other
    /// reads of the organization), and the read fails if that event cannot be written.
    pub async fn get_record(
        &self,
        proof: &SessionProof,
        org: OrgId,
        collection: &str,
        id: RecordId,
        meta: &RequestMeta,
    ) -> Result<RecordView, AppError> {
        let name = parse_name(collection)?;
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::RecordsReadOwn);
        let caller = tx.caller();
        let found_collection = collections::get(&mut tx, org, &name);
        let found = records::get(&mut tx, org, &name, id);
        let mut results = tx.run(&self.db).await?;
        let (caller, collection, record) = (results.get(caller)?, results.get(found_collection)?, results.get(found)?);
        let schema = self
            .schemas
            .compiled(collection.schema_id, &collection.schema)
            .map_err(|_| AppError::Internal(format!("stored schema of {name} does not compile")))?;
        if record.sealed_fields.is_empty() {
            return self.present(proof, org, record, &schema, &caller.permissions).await;
        }
        let access = SensitiveAccess {
            event: palisade_core::EventId::new(&*self.clock, &*self.random),
            at: now,
            actor: caller.actor().ok_or_else(|| AppError::Internal("a tenant transaction without a caller".into()))?,
            shown: caller.permissions.contains(&Permission::RecordsSensitiveRead),
            record: record.id,
            collection: name.as_str().to_owned(),
            fields: record.sealed_fields.clone(),
            meta: meta.clone(),
        };
        // Opened while the event is written; returned only once both succeeded.
        let (view, written) = tokio::join!(
            self.present(proof, org, record, &schema, &caller.permissions),
            self.write_sensitive_access(proof, org, access)
        );
        written?;
        view
    }

    /// A record for display with its sensitive values left sealed, for a page that shows them
    /// only on request (the console's "Reveal"): nothing is decrypted, so no sensitive-read
    /// event is written. `concealed` names the sensitive fields a permitted caller could reveal
    /// with `get_record`; for other callers they are in `masked` as usual.
    pub async fn get_record_concealed(
        &self,
        proof: &SessionProof,
        org: OrgId,
        collection: &str,
        id: RecordId,
    ) -> Result<ConcealedRecord, AppError> {
        let name = parse_name(collection)?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::RecordsReadOwn);
        let permissions = tx.permissions();
        let found_collection = collections::get(&mut tx, org, &name);
        let found = records::get(&mut tx, org, &name, id);
        let mut results = tx.run(&self.db).await?;
        let (permissions, collection, record) =
            (results.get(permissions)?, results.get(found_collection)?, results.get(found)?);
        let schema = self
            .schemas
            .compiled(collection.schema_id, &collection.schema)
            .map_err(|_| AppError::Internal(format!("stored schema of {name} does not compile")))?;
        let may_read = permissions.contains(&Permission::RecordsSensitiveRead);
        // Presented as to a caller without the permission: every sensitive field left out.
        let without: Vec<Permission> =
            permissions.into_iter().filter(|p| *p != Permission::RecordsSensitiveRead).collect();
        let mut view = self.present(proof, org, record, &schema, &without).await?;
        let concealed = if may_read { std::mem::take(&mut view.masked) } else { Vec::new() };
        Ok(ConcealedRecord { view, concealed })
    }

    /// Replaces a record's data (and assignees); with `patch`, `input.data` is an RFC 7396 merge
    /// patch applied to the stored data instead. `expected_version` is the If-Match precondition.
    pub async fn update_record(
        &self,
        proof: &SessionProof,
        org: OrgId,
        collection: &str,
        id: RecordId,
        change: RecordUpdate,
        meta: &RequestMeta,
    ) -> Result<RecordView, AppError> {
        let name = parse_name(collection)?;
        if !change.patch {
            check_size(&change.data)?;
        } else if !change.data.is_object() {
            return Err(ValidationError::new("data", "a merge patch must be a JSON object").into());
        }
        let assignees = match &change.assignees {
            Some(raw) => Some(parse_assignees(raw).map_err(AppError::Validation)?),
            None => None,
        };
        // Read what is stored (the merge base, the version, what the caller may see).
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::RecordsUpdate);
        let permissions = tx.permissions();
        let found_collection = collections::get(&mut tx, org, &name);
        let found = records::get(&mut tx, org, &name, id);
        let mut results = tx.run(&self.db).await?;
        let (permissions, collection, stored) =
            (results.get(permissions)?, results.get(found_collection)?, results.get(found)?);
        if change.expected_version.is_some_and(|v| v != stored.version) {
            return Err(AppError::PreconditionFailed);
        }
        let schema = self
            .schemas
            .compiled(collection.schema_id, &collection.schema)
            .map_err(|_| AppError::Internal(format!("stored schema of {name} does not compile")))?;
        // The whole stored record, sensitive fields opened (for the server only: a caller
        // without records.sensitive_read still never sees them).
        let sealed = palisade_store::repo::records::SealedFields {
            envelope: stored.sealed.clone(),
            fields: stored.sealed_fields.clone(),
        };
        let stored_data = join(&stored.data, self.open_fields(proof, org, id, &sealed).await?);
        let data = if change.patch {
            let mut merged = stored_data.clone();
            json_patch::merge(&mut merged, &change.data);
            check_size(&merged)?;
            merged
        } else {
            let mut data = change.data;
            keep_hidden_fields(&mut data, &stored_data, &schema, &permissions);
            data
        };
        let violations = schema.violations(&data);
        if !violations.is_empty() {
            return Err(AppError::Validation(violations));
        }
        let assignees = assignees.unwrap_or_else(|| stored.assignees.clone());
        let fields = changed_fields(&stored_data, &data);
        let (clear, sensitive) = split(&data, &schema);
        let sealed = self.seal_fields(proof, org, id, &sensitive, Permission::RecordsUpdate).await?;
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::RecordsUpdate);
        let updated = records::update(
            &mut tx,
            RecordChange {
                org,
                collection: &name,
                schema_id: collection.schema_id,
                id,
                from_version: stored.version,
                data: &clear,
                sealed: &sealed,
                assignees: &assignees,
                at: now,
            },
        );
        audit::record(
            &mut tx,
            self.audit("record.updated", meta)
                .org(org)
                .target("record", id.as_uuid())
                .details(json!({"collection": name.as_str(), "fields": fields})),
        );
        // The answer shows the record whole, sensitive fields included for a permitted caller —
        // stored values it did not send among them: that is a clear read too.
        if permissions.contains(&Permission::RecordsSensitiveRead) && !sealed.fields.is_empty() {
            audit::record(
                &mut tx,
                self.audit("record.sensitive_read", meta)
                    .org(org)
                    .target("record", id.as_uuid())
                    .details(json!({"collection": name.as_str(), "fields": sealed.fields})),
            );
        }
        let mut results = match tx.run(&self.db).await {
            Err(StoreError::SchemaChanged) => {
                return Err(AppError::Conflict("the collection's schema changed meanwhile; retry".into()));
            }
            other => other?,
        };
        self.present(proof, org, results.get(updated)?, &schema, &permissions).await
    }

    pub async fn delete_record(
        &self,
        proof: &SessionProof,
        org: OrgId,
        collection: &str,
        id: RecordId,
        expected_version: Option<i32>,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let name = parse_name(collection)?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::RecordsDelete);
        records::delete(&mut tx, org, &name, id, expected_version);
        audit::record(
            &mut tx,
            self.audit("record.deleted", meta)
                .org(org)
                .target("record", id.as_uuid())
                .details(json!({"collection": name.as_str()})),
        );
        tx.run(&self.db).await?;
        Ok(())
    }
}

/// A replace (`patch: false`) or merge patch (`patch: true`).
pub struct RecordUpdate {
    pub data: Value,
    /// `None` keeps the assignees as they are.
    pub assignees: Option<Vec<String>>,
    pub patch: bool,
    /// The If-Match precondition, when given.
    pub expected_version: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_name_every_difference_once() {
        let before = json!({"a": 1, "b": 2, "c": 3});
        let after = json!({"a": 1, "b": 5, "d": 4});
        assert_eq!(changed_fields(&before, &after), ["b", "c", "d"]);
        assert!(changed_fields(&before, &before).is_empty());
    }

    #[test]
    fn assignees_must_be_distinct_user_ids() {
        let id = UserId::from_uuid(Uuid::now_v7()).to_string();
        assert_eq!(parse_assignees(std::slice::from_ref(&id)).unwrap().len(), 1);
        let errors = parse_assignees(&[id.clone(), id, "org_x".into()]).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["/assignees/1", "/assignees/2"]);
    }
}
