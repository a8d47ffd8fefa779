//! An organization's write-only secrets store (E3, E5): connector and webhook credentials go in
//! and never come back out through any API, log or export. Each value is sealed under the
//! organization's data key, bound to organization, table, column and secret id, before it
//! reaches the database; audit events name the secret, never its value.

use palisade_core::{OrgId, Permission, SecretId, SessionProof, ValidationError};
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::secrets::{self, SecretRow};
use palisade_store::{StoreError, Tx};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{App, AppError};

/// The longest secret value accepted (a private key in PEM fits comfortably).
pub const SECRET_MAX_BYTES: usize = 16 * 1024;

/// What seals a secret's value to its row.
pub(crate) fn context(org: OrgId, id: SecretId) -> Vec<u8> {
    format!("{org}|secrets|sealed|{id}").into_bytes()
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.len() <= 100
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_name(name: &str, errors: &mut Vec<ValidationError>) {
    if !valid_name(name) {
        errors.push(ValidationError::new(
            "name",
            "must start with a letter and hold at most 100 letters, digits, '_', '.' or '-'",
        ));
    }
}

fn check_value(value: &SecretString, errors: &mut Vec<ValidationError>) {
    let len = value.expose_secret().len();
    if len == 0 || len > SECRET_MAX_BYTES {
        // Never quote the value: it is the secret.
        errors.push(ValidationError::new("value", format!("must be 1 to {SECRET_MAX_BYTES} bytes")));
    }
}

fn refuse(errors: Vec<ValidationError>) -> Result<(), AppError> {
    if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
}

impl App {
    /// Stores a new secret; a name already in use is a conflict (replace it instead).
    pub async fn create_secret(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        value: SecretString,
        meta: &RequestMeta,
    ) -> Result<SecretRow, AppError> {
        let mut errors = Vec::new();
        check_name(name, &mut errors);
        check_value(&value, &mut errors);
        refuse(errors)?;
        let key = self.org_sealing_key(proof, org, Permission::SecretsManage).await?;
        let id = SecretId::new(&*self.clock, &*self.random);
        let sealed = key.seal(value.expose_secret().as_bytes(), &context(org, id));
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::SecretsManage);
        let created = secrets::create(&mut tx, org, id, name, sealed, now);
        audit::record(
            &mut tx,
            self.audit("secret.created", meta).org(org).target("secret", id.as_uuid()).details(json!({"name": name})),
        );
        match tx.run(&self.db).await {
            Err(StoreError::Conflict { .. }) => {
                Err(AppError::Conflict(format!("a secret named {name} exists; replace it with PUT")))
            }
            other => Ok(other?.get(created)?),
        }
    }

    /// Replaces the value of the secret named `name` (its id, and so its binding, stay).
    pub async fn replace_secret(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        value: SecretString,
        meta: &RequestMeta,
    ) -> Result<SecretRow, AppError> {
        let mut errors = Vec::new();
        check_value(&value, &mut errors);
        refuse(errors)?;
        if !valid_name(name) {
            return Err(AppError::NotFound);
        }
        let key = self.org_sealing_key(proof, org, Permission::SecretsManage).await?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::SecretsManage);
        let found = secrets::get(&mut tx, org, name);
        let id = tx.run(&self.db).await?.get(found)?.id;
        let sealed = key.seal(value.expose_secret().as_bytes(), &context(org, id));
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::SecretsManage);
        let replaced = secrets::replace(&mut tx, org, id, sealed, now);
        audit::record(
            &mut tx,
            self.audit("secret.replaced", meta).org(org).target("secret", id.as_uuid()).details(json!({"name": name})),
        );
        Ok(tx.run(&self.db).await?.get(replaced)?)
    }

    pub async fn delete_secret(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if !valid_name(name) {
            return Err(AppError::NotFound);
        }
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::SecretsManage);
        let found = secrets::get(&mut tx, org, name);
        let id = tx.run(&self.db).await?.get(found)?.id;
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::SecretsManage);
        secrets::delete(&mut tx, org, name);
        audit::record(
            &mut tx,
            self.audit("secret.deleted", meta).org(org).target("secret", id.as_uuid()).details(json!({"name": name})),
        );
        tx.run(&self.db).await?;
        Ok(())
    }

    /// Names and metadata of the organization's secrets; never a value.
    pub async fn list_secrets(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<SecretRow>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::SecretsManage);
        let list = secrets::list(&mut tx, org);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    /// A secret's value, for the server's own consumers (connectors, webhooks): never returned
    /// by an API. The caller must hold `secrets.manage` or be acting for a component that does.
    pub async fn reveal_secret_for_use(
        &self,
        proof: &SessionProof,
        org: OrgId,
        name: &str,
    ) -> Result<SecretString, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::SecretsManage);
        let found = secrets::sealed_value(&mut tx, org, name);
        let (id, sealed) = tx.run(&self.db).await?.get(found)?;
        let key_id = palisade_crypto::envelope::key_id_of(&sealed)
            .ok_or_else(|| AppError::Undecryptable(format!("secret {name} of {org}")))?;
        let key = self.org_opening_key(proof, org, uuid::Uuid::from_bytes(key_id)).await?;
        let plain = key
            .open(&sealed, &context(org, id))
            .map_err(|_| AppError::Undecryptable(format!("secret {name} of {org}")))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| AppError::Internal(format!("secret {name} of {org} is not text")))?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_identifiers() {
        for good in ["stripe_api_key", "SMTP.password", "a", "x-1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "1abc", "_x", "has space", "ünï", "a/b", &"a".repeat(101)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
