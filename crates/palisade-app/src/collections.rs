//! Collections: create, list, read, change the schema (refused while any record would break,
//! unless defaults mend them), delete when empty. Managing needs `collections.manage`.

use palisade_core::{CollectionName, OrgId, Permission, RecordId, SessionProof, ValidationError};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::collections::{self, Collection, NewCollection, SchemaChange};
use palisade_store::repo::records::{self, MigratedRecord};
use serde_json::{Value, json};

use crate::schema::compile;
use crate::sealed_fields::{join, split};
use crate::{App, AppError};

/// A schema change that existing records block: each offending record with its violations.
#[derive(Debug)]
pub struct IncompatibleRecords(pub Vec<(RecordId, Vec<ValidationError>)>);

pub(crate) fn parse_name(raw: &str) -> Result<CollectionName, AppError> {
    // A path segment that is not a valid name cannot name a collection: 404, as for any unknown one.
    CollectionName::parse(raw).map_err(|_| AppError::NotFound)
}

impl App {
    /// Checks a collection schema without storing anything (the console's live check while a
    /// schema is typed): the same compilation `create_collection` and schema changes run, for
    /// members who may manage collections only.
    pub async fn check_collection_schema(
        &self,
        proof: &SessionProof,
        org: OrgId,
        schema: &Value,
    ) -> Result<Result<(), Vec<ValidationError>>, AppError> {
        self.require_permission(proof, org, Permission::CollectionsManage).await?;
        Ok(compile_off_runtime(schema).await?.map(|_| ()))
    }

    /// Checks the caller may do `permission` in the organization before any costly work (a
    /// schema compile), so only members who could save a schema can make the server compile one.
    async fn require_permission(
        &self,
        proof: &SessionProof,
        org: OrgId,
        permission: Permission,
    ) -> Result<(), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(permission);
        tx.run(&self.db).await?;
        Ok(())
    }

    pub async fn create_collection(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        schema: &Value,
        meta: &RequestMeta,
    ) -> Result<Collection, AppError> {
        let name = CollectionName::parse(name);
        self.require_permission(proof, org, Permission::CollectionsManage).await?;
        let compiled = compile_off_runtime(schema).await?;
        let name = match (name, compiled) {
            (Ok(name), Ok(_)) => name,
            (name, compiled) => {
                let mut errors: Vec<ValidationError> = name.err().into_iter().collect();
                errors.extend(compiled.err().unwrap_or_default());
                return Err(AppError::Validation(errors));
            }
        };
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::CollectionsManage);
        collections::create(
            &mut tx,
            NewCollection {
                org,
                name: &name,
                schema,
                schema_id: self.random_uuid(),
                at: now,
                quota: self.policy.collections_per_org,
            },
        );
        audit::record(
            &mut tx,
            self.audit("collection.created", meta).org(org).details(json!({"collection": name.as_str()})),
        );
        let created = collections::get(&mut tx, org, &name);
        match tx.run(&self.db).await {
            Err(palisade_store::StoreError::Conflict { .. }) => {
                Err(AppError::Conflict(format!("a collection named {name} already exists")))
            }
            other => Ok(other?.get(created)?),
        }
    }

    pub async fn list_collections(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<Collection>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::CollectionsRead);
        let list = collections::list(&mut tx, org);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    pub async fn get_collection(&self, proof: &SessionProof, org: OrgId, name: &str) -> Result<Collection, AppError> {
        let name = parse_name(name)?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::CollectionsRead);
        let found = collections::get(&mut tx, org, &name);
        Ok(tx.run(&self.db).await?.get(found)?)
    }

    /// Replaces the schema. Every record is checked against it first (after filling missing
    /// top-level fields from `defaults`, which are then written too); if any would break, nothing
    /// changes and the offending records are listed.
    pub async fn change_collection_schema(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        schema: &Value,
        defaults: Option<&serde_json::Map<String, Value>>,
        meta: &RequestMeta,
    ) -> Result<Result<Collection, IncompatibleRecords>, AppError> {
        let name = parse_name(name)?;
        self.require_permission(proof, org, Permission::CollectionsManage).await?;
        let compiled = compile_off_runtime(schema).await?.map_err(AppError::Validation)?;
        let now = self.clock.now();
        // Read every record (needs records.read_all, so none is hidden from the check).
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::CollectionsManage);
        tx.require(Permission::RecordsReadAll);
        let current = collections::get(&mut tx, org, &name);
        let all = records::all_for_check(&mut tx, org, &name);
        let mut results = tx.run(&self.db).await?;
        let (current, all) = (results.get(current)?, results.get(all)?);
        // Each record whole (sensitive fields opened), defaults filled, checked; then split again
        // by the new schema, so a field it newly marks sensitive is sealed in this same change
        // (and one it no longer marks goes back in clear).
        let mut migrated: Vec<MigratedRecord> = Vec::new();
        let mut offending: Vec<(RecordId, Vec<ValidationError>)> = Vec::new();
        for stored in &all {
            let whole = join(&stored.data, self.open_fields(proof, org, stored.id, &stored.sealed).await?);
            let filled = fill_defaults(&whole, defaults);
            let checked = filled.as_ref().unwrap_or(&whole);
            let violations = compiled.violations(checked);
            if !violations.is_empty() {
                offending.push((stored.id, violations));
                continue;
            }
            let (clear, sensitive) = split(checked, &compiled);
            let mut names: Vec<String> = sensitive.keys().cloned().collect();
            names.sort();
            let reseal = names != stored.sealed.fields;
            if clear != stored.data || reseal {
                let sealed = if reseal {
                    Some(self.seal_fields(proof, org, stored.id, &sensitive, Permission::CollectionsManage).await?)
                } else {
                    None
                };
                migrated.push(MigratedRecord { id: stored.id, data: clear, sealed });
            }
        }
        if !offending.is_empty() {
            return Ok(Err(IncompatibleRecords(offending)));
        }
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::CollectionsManage);
        tx.require(Permission::RecordsReadAll);
        collections::change_schema(
            &mut tx,
            SchemaChange {
                org,
                name: &name,
                schema,
                from_schema: current.schema_id,
                new_schema_id: self.random_uuid(),
                fingerprint: records::fingerprint(&all),
                at: now,
            },
        );
        records::migrate_data(&mut tx, org, &name, &migrated, now);
        audit::record(
            &mut tx,
            self.audit("collection.schema_changed", meta).org(org).details(json!({
                "collection": name.as_str(),
                "from_version": current.version,
                "records_migrated": migrated.len(),
            })),
        );
        let changed = collections::get(&mut tx, org, &name);
        let changed = match tx.run(&self.db).await {
            Err(palisade_store::StoreError::SchemaChanged) => {
                return Err(AppError::Conflict("records changed while the schema was checked; retry".into()));
            }
            other => other?.get(changed)?,
        };
        self.schemas.forget(org.as_uuid(), name.as_str());
        Ok(Ok(changed))
    }

    /// Deletes a collection that holds no records.
    pub async fn delete_collection(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let name = parse_name(name)?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::CollectionsManage);
        collections::delete(&mut tx, org, &name);
        audit::record(
            &mut tx,
            self.audit("collection.deleted", meta).org(org).details(json!({"collection": name.as_str()})),
        );
        match tx.run(&self.db).await {
            Err(palisade_store::StoreError::Conflict { .. }) => {
                Err(AppError::Conflict(format!("collection {name} still holds records; delete them first")))
            }
            other => {
                other?;
                self.schemas.forget(org.as_uuid(), name.as_str());
                Ok(())
            }
        }
    }

    pub(crate) fn random_uuid(&self) -> uuid::Uuid {
        palisade_core::RecordId::new(&*self.clock, &*self.random).as_uuid()
    }
}

/// The record with each missing top-level field taken from `defaults`; `None` when nothing was
/// missing.
/// Compiling a schema is CPU work (regexes): it runs on the blocking pool, never on the
/// threads that serve requests.
async fn compile_off_runtime(
    schema: &Value,
) -> Result<Result<crate::schema::CompiledSchema, Vec<ValidationError>>, AppError> {
    let schema = schema.clone();
    tokio::task::spawn_blocking(move || compile(&schema))
        .await
        .map_err(|err| AppError::Internal(format!("schema compile task: {err}")))
}

fn fill_defaults(data: &Value, defaults: Option<&serde_json::Map<String, Value>>) -> Option<Value> {
    let (Value::Object(fields), Some(defaults)) = (data, defaults) else { return None };
    let missing: Vec<(&String, &Value)> = defaults.iter().filter(|(k, _)| !fields.contains_key(*k)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut filled = fields.clone();
    filled.extend(missing.into_iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(Value::Object(filled))
}
