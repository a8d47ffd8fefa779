//! Organization API keys: created by an admin after a step-up with a subset of their own
//! permissions, an optional expiry and an optional IP allow-list; shown once; stored as a keyed
//! hash; revoked at once or rotated with an overlap window. A key works only on its own
//! organization's routes and can never do more than its creator's current role.

use std::net::IpAddr;

use palisade_core::{ApiKeyId, OrgId, Permission, SessionProof, SessionTokenHash, ValidationError};
use palisade_store::Tx;
use palisade_store::repo::api_keys::{self, ApiKeyRow, KeyDraft, Successor};
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::security;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use crate::{App, AppError, STEP_UP_WINDOW};

/// Domain separation for the keyed hash of API keys (HMAC under the instance key).
const KEY_HASH_CONTEXT: &str = "palisade-api-key-v1";
/// The most networks one key's allow-list may name.
const MAX_ALLOWED_NETWORKS: usize = 50;
/// The longest overlap a rotation may leave the old key working.
pub const MAX_ROTATION_OVERLAP_MINUTES: i64 = 7 * 24 * 60;

/// A key as a request describes it.
pub struct ApiKeyInput {
    pub name: String,
    pub permissions: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub allowed_ips: Option<Vec<String>>,
}

/// A key just created or rotated: its listing and the secret, which is never shown again.
pub struct IssuedApiKey {
    pub key: ApiKeyRow,
    pub secret: SecretString,
}

struct CheckedKey {
    name: String,
    permissions: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    allowed_ips: Option<Vec<String>>,
}

fn check(input: ApiKeyInput, now: OffsetDateTime) -> Result<CheckedKey, AppError> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(ValidationError::new("name", "must be 1 to 100 characters, without control characters"));
    }
    if input.permissions.is_empty() {
        errors.push(ValidationError::new("permissions", "must name at least one permission (see GET …/roles)"));
    }
    let mut permissions: Vec<String> = Vec::new();
    for (i, name) in input.permissions.iter().enumerate() {
        match Permission::parse(name) {
            Some(p) if !permissions.iter().any(|q| q == p.as_str()) => permissions.push(p.as_str().to_owned()),
            Some(_) => {}
            None => {
                errors.push(ValidationError::new(&format!("permissions/{i}"), "is not a permission (see GET …/roles)"))
            }
        }
    }
    // Reading every record includes reading one's own (the permission every read route checks).
    if permissions.iter().any(|p| p == Permission::RecordsReadAll.as_str())
        && !permissions.iter().any(|p| p == Permission::RecordsReadOwn.as_str())
    {
        permissions.push(Permission::RecordsReadOwn.as_str().to_owned());
    }
    permissions.sort();
    if input.expires_at.is_some_and(|at| at <= now) {
        errors.push(ValidationError::new("expires_at", "must be in the future"));
    }
    let allowed_ips = match input.allowed_ips {
        None => None,
        Some(list) if list.is_empty() || list.len() > MAX_ALLOWED_NETWORKS => {
            errors.push(ValidationError::new(
                "allowed_ips",
                "must list 1 to 50 addresses or networks (omit it to allow any address)",
            ));
            None
        }
        Some(list) => {
            let mut networks = Vec::with_capacity(list.len());
            for (i, entry) in list.iter().enumerate() {
                match parse_network(entry) {
                    Some(net) => networks.push(net),
                    None => errors.push(ValidationError::new(
                        &format!("allowed_ips/{i}"),
                        "must be an IP address or a network in CIDR form (203.0.113.0/24, 2001:db8::/32)",
                    )),
                }
            }
            Some(networks)
        }
    };
    if errors.is_empty() {
        Ok(CheckedKey { name, permissions, expires_at: input.expires_at, allowed_ips })
    } else {
        Err(AppError::Validation(errors))
    }
}

/// `203.0.113.7` → `203.0.113.7/32`; `203.0.113.9/24` → `203.0.113.0/24` (host bits cleared).
fn parse_network(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<ipnet::IpNet>() {
        return Some(net.trunc().to_string());
    }
    entry.parse::<IpAddr>().ok().map(|ip| ipnet::IpNet::from(ip).to_string())
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl App {
    /// The proof for a presented `pal_…` key, or `None` when it is not a well-formed key (wrong
    /// shape or checksum: refused without a database round trip).
    pub fn api_key_proof(&self, presented: &str, ip: Option<IpAddr>) -> Option<SessionProof> {
        palisade_auth::api_key::well_formed(presented).then(|| SessionProof::ApiKey {
            hash: SessionTokenHash(self.keys.mac(KEY_HASH_CONTEXT, presented.as_bytes())),
            ip,
        })
    }

    /// A new key id, secret and the secret's keyed hash.
    fn mint_api_key(&self) -> (ApiKeyId, palisade_auth::api_key::MintedApiKey, [u8; 32]) {
        let minted = palisade_auth::api_key::mint(&*self.random, &self.policy.api_key_env);
        let hash = self.keys.mac(KEY_HASH_CONTEXT, minted.secret.expose_secret().as_bytes());
        (ApiKeyId::new(&*self.clock, &*self.random), minted, hash)
    }

    /// Creates a key (needs `api_keys.manage`, a step-up, and every permission it grants).
    pub async fn create_api_key(
        &self,
        proof: &SessionProof,
        org: OrgId,
        input: ApiKeyInput,
        meta: &RequestMeta,
    ) -> Result<IssuedApiKey, AppError> {
        let now = self.clock.now();
        let key = check(input, now)?;
        let (id, minted, secret_hash) = self.mint_api_key();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::ApiKeysManage);
        security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        api_keys::create(
            &mut tx,
            KeyDraft {
                org,
                id,
                name: &key.name,
                prefix: &minted.prefix,
                secret_hash,
                permissions: &key.permissions,
                allowed_ips: key.allowed_ips.as_deref(),
                expires_at: key.expires_at,
                at: now,
            },
        );
        audit::record(
            &mut tx,
            self.audit("api_key.created", meta).org(org).target("api_key", id.as_uuid()).details(json!({
                "name": key.name,
                "prefix": minted.prefix,
                "permissions": key.permissions,
                "expires_at": key.expires_at.map(rfc3339),
                "allowed_ips": key.allowed_ips,
            })),
        );
        let created = api_keys::get(&mut tx, org, id);
        let key = tx.run(&self.db).await?.get(created)?;
        Ok(IssuedApiKey { key, secret: minted.secret })
    }

    pub async fn list_api_keys(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<ApiKeyRow>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::ApiKeysManage);
        let keys = api_keys::list(&mut tx, org);
        Ok(tx.run(&self.db).await?.get(keys)?)
    }

    /// Revokes a key: it stops working on the next request. No step-up: taking power away
    /// should never wait.
    pub async fn revoke_api_key(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: ApiKeyId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::ApiKeysManage);
        api_keys::revoke(&mut tx, org, id, now);
        audit::record(&mut tx, self.audit("api_key.revoked", meta).org(org).target("api_key", id.as_uuid()));
        tx.run(&self.db).await?;
        Ok(())
    }

    /// Issues a new secret for key `old` with the same name, scopes, allow-list and expiry; the
    /// old secret keeps working for `overlap_minutes` (0 = stops now). Needs a step-up.
    pub async fn rotate_api_key(
        &self,
        proof: &SessionProof,
        org: OrgId,
        old: ApiKeyId,
        overlap_minutes: i64,
        meta: &RequestMeta,
    ) -> Result<IssuedApiKey, AppError> {
        if !(0..=MAX_ROTATION_OVERLAP_MINUTES).contains(&overlap_minutes) {
            return Err(ValidationError::new("overlap_minutes", "must be between 0 and 10080 (7 days)").into());
        }
        let now = self.clock.now();
        let old_until = now + time::Duration::minutes(overlap_minutes);
        let (id, minted, secret_hash) = self.mint_api_key();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::ApiKeysManage);
        security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        let successor = Successor { id, prefix: &minted.prefix, secret_hash, at: now };
        api_keys::rotate(&mut tx, org, old, &successor, old_until);
        audit::record(
            &mut tx,
            self.audit("api_key.rotated", meta).org(org).target("api_key", id.as_uuid()).details(json!({
                "rotated_from": old.to_string(),
                "prefix": minted.prefix,
                "old_key_valid_until": rfc3339(old_until),
            })),
        );
        let created = api_keys::get(&mut tx, org, id);
        let key = tx.run(&self.db).await?.get(created)?;
        Ok(IssuedApiKey { key, secret: minted.secret })
    }
}
