//! Sensitive record fields at rest (E2): the fields a collection's schema marks
//! `x-palisade-sensitive` never reach the `data` column. They travel as one envelope per record
//! under the organization's data key, bound to organization, table, column and record id, with
//! their names beside it. Only roles holding records.sensitive_read see them in clear; everyone
//! else gets them masked, and both outcomes are audited by the read itself.

use palisade_core::{OrgId, Permission, RecordId, SessionProof};
use palisade_store::repo::records::{Record, SealedFields};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::schema::CompiledSchema;
use crate::{App, AppError};

/// What binds a record's envelope to its row.
pub(crate) fn context(org: OrgId, id: RecordId) -> Vec<u8> {
    format!("{org}|records|sealed|{id}").into_bytes()
}

/// Splits a record into what is stored in clear and its sensitive fields (by `schema`).
pub(crate) fn split(data: &Value, schema: &CompiledSchema) -> (Value, Map<String, Value>) {
    let mut clear = data.clone();
    let mut sensitive = Map::new();
    if let Value::Object(fields) = &mut clear {
        for name in schema.sensitive_fields() {
            if let Some(value) = fields.remove(name) {
                sensitive.insert(name.to_owned(), value);
            }
        }
    }
    (clear, sensitive)
}

/// The whole record: clear fields and the opened sensitive ones.
pub(crate) fn join(clear: &Value, sensitive: Map<String, Value>) -> Value {
    let mut whole = clear.clone();
    if let Value::Object(fields) = &mut whole {
        fields.extend(sensitive);
    }
    whole
}

impl App {
    /// Seals `sensitive` for record `id` (nothing to seal → no envelope). `needed` is the
    /// permission of the write, checked before an organization's first data key is made.
    pub(crate) async fn seal_fields(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: RecordId,
        sensitive: &Map<String, Value>,
        needed: Permission,
    ) -> Result<SealedFields, AppError> {
        if sensitive.is_empty() {
            return Ok(SealedFields::default());
        }
        let key = self.org_sealing_key(proof, org, needed).await?;
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(sensitive).map_err(|e| AppError::Internal(format!("sensitive fields: {e}")))?,
        );
        let mut fields: Vec<String> = sensitive.keys().cloned().collect();
        fields.sort();
        Ok(SealedFields { envelope: Some(key.seal(&plain, &context(org, id))), fields })
    }

    /// Opens a record's sensitive fields (for the server's own use: merging a patch, checking a
    /// new schema, or showing a caller allowed to see them). A value that does not open is an
    /// error naming the record, never a panic or a silent gap.
    pub(crate) async fn open_fields(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: RecordId,
        sealed: &SealedFields,
    ) -> Result<Map<String, Value>, AppError> {
        let Some(envelope) = &sealed.envelope else { return Ok(Map::new()) };
        let corrupt = || AppError::Undecryptable(format!("the sensitive fields of record {id}"));
        let key_id = palisade_crypto::envelope::key_id_of(envelope).ok_or_else(corrupt)?;
        let key = self.org_opening_key(proof, org, Uuid::from_bytes(key_id)).await?;
        let plain = key.open(envelope, &context(org, id)).map_err(|_| corrupt())?;
        match serde_json::from_slice(&plain) {
            Ok(Value::Object(fields)) => Ok(fields),
            _ => Err(corrupt()),
        }
    }

    /// The record as this caller may see it: sensitive fields opened and shown to holders of
    /// records.sensitive_read, otherwise left out and named in `masked`.
    pub(crate) async fn present(
        &self,
        proof: &SessionProof,
        org: OrgId,
        mut record: Record,
        schema: &CompiledSchema,
        permissions: &[Permission],
    ) -> Result<crate::RecordView, AppError> {
        let sealed = SealedFields { envelope: record.sealed.take(), fields: std::mem::take(&mut record.sealed_fields) };
        let mut masked = Vec::new();
        if permissions.contains(&Permission::RecordsSensitiveRead) {
            let opened = self.open_fields(proof, org, record.id, &sealed).await?;
            record.data = join(&record.data, opened);
        } else {
            masked = sealed.fields;
            // A field the schema marks sensitive but stored in clear (marked after the record
            // was written and not yet resealed) is masked all the same.
            if let Value::Object(fields) = &mut record.data {
                for name in schema.sensitive_fields() {
                    if fields.remove(name).is_some() && !masked.iter().any(|m| m == name) {
                        masked.push(name.to_owned());
                    }
                }
            }
            masked.sort();
        }
        Ok(crate::RecordView { record, masked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_fields_split_off_and_join_back() {
        let schema = crate::schema::compile(&json!({"type": "object", "properties": {
            "title": {"type": "string"}, "salary": {"type": "number", "x-palisade-sensitive": true},
            "ssn": {"type": "string", "x-palisade-sensitive": true}}}))
        .unwrap();
        let data = json!({"title": "Roofer", "salary": 5000});
        let (clear, sensitive) = split(&data, &schema);
        assert_eq!(clear, json!({"title": "Roofer"}));
        assert_eq!(Value::Object(sensitive.clone()), json!({"salary": 5000}));
        assert_eq!(join(&clear, sensitive), data);
        let (_, none) = split(&json!({"title": "x"}), &schema);
        assert!(none.is_empty());
    }
}
