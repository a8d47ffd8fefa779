//! Organization API keys: create (scopes a subset of the creator's permissions), list, revoke,
//! rotate with an overlap window. Keys are found by keyed hash only inside `enter_tenant_key`.

use palisade_core::{ApiKeyId, OrgId, UserId};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::pipeline::{Step, Tenant, Tx};
use crate::repo::exactly_one;

/// A key as lists show it: never its secret or hash.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub permissions: Vec<String>,
    pub allowed_ips: Option<Vec<String>>,
    pub created_by: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
    pub rotated_from: Option<ApiKeyId>,
}

const COLUMNS: &str = "k.id, k.name, k.prefix, k.permissions, k.allowed_ips::text[], k.created_by, k.created_at, \
    k.expires_at, k.last_used_at, host(k.last_used_ip), k.revoked_at, k.rotated_from";

fn from_row(r: &Row) -> ApiKeyRow {
    ApiKeyRow {
        id: ApiKeyId::from_uuid(r.get(0)),
        name: r.get(1),
        prefix: r.get(2),
        permissions: r.get(3),
        allowed_ips: r.get(4),
        created_by: UserId::from_uuid(r.get(5)),
        created_at: r.get(6),
        expires_at: r.get(7),
        last_used_at: r.get(8),
        last_used_ip: r.get(9),
        revoked_at: r.get(10),
        rotated_from: r.get::<_, Option<uuid::Uuid>>(11).map(ApiKeyId::from_uuid),
    }
}

/// A new key's stored parts.
pub struct KeyDraft<'a> {
    pub org: OrgId,
    pub id: ApiKeyId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: [u8; 32],
    pub permissions: &'a [String],
    /// Networks in CIDR form (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7/32`).
    pub allowed_ips: Option<&'a [String]>,
    pub expires_at: Option<OffsetDateTime>,
    pub at: OffsetDateTime,
}

const HELD: &str = "SELECT palisade.require_permissions_held($1)";
// The creator is the transaction's verified user, never a parameter.
const INSERT: &str = "INSERT INTO palisade.api_keys \
    (tenant_id, id, name, prefix, secret_hash, permissions, allowed_ips, created_by, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7::text[]::cidr[], palisade.current_user_id(), $8, $9)";

/// Creates a key; fails in the database (PA403) if the caller lacks any of its permissions.
pub fn create(tx: &mut Tx<Tenant>, draft: KeyDraft<'_>) {
    tx.push_write(HELD, vec![Box::new(draft.permissions.to_vec())]);
    tx.push_write(
        INSERT,
        vec![
            Box::new(draft.org.as_uuid()),
            Box::new(draft.id.as_uuid()),
            Box::new(draft.name.to_owned()),
            Box::new(draft.prefix.to_owned()),
            Box::new(draft.secret_hash.to_vec()),
            Box::new(draft.permissions.to_vec()),
            Box::new(draft.allowed_ips.map(<[String]>::to_vec)),
            Box::new(draft.at),
            Box::new(draft.expires_at),
        ],
    );
}

const LIST: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM palisade.api_keys k WHERE k.tenant_id = $1 ORDER BY k.revoked_at IS NOT NULL, k.created_at DESC, k.id"
);

pub fn list(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Vec<ApiKeyRow>> {
    tx.push(LIST, vec![Box::new(org.as_uuid())], |rows| Ok(rows.iter().map(from_row).collect()))
}

const GET: &str =
    const_format::concatcp!("SELECT ", COLUMNS, " FROM palisade.api_keys k WHERE k.tenant_id = $1 AND k.id = $2");

pub fn get(tx: &mut Tx<Tenant>, org: OrgId, id: ApiKeyId) -> Step<ApiKeyRow> {
    tx.push(GET, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid())], |rows| Ok(from_row(&exactly_one(rows)?)))
}

const REVOKE: &str = "WITH r AS (UPDATE palisade.api_keys SET revoked_at = coalesce(revoked_at, $3) \
        WHERE tenant_id = $1 AND id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM r))";

/// Revokes a key at once (a revoked key stays revoked; its first revocation time is kept).
pub fn revoke(tx: &mut Tx<Tenant>, org: OrgId, id: ApiKeyId, at: OffsetDateTime) {
    tx.push_write(REVOKE, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid()), Box::new(at)]);
}

/// The new secret of a rotated key; everything else is copied from the key it replaces.
pub struct Successor<'a> {
    pub id: ApiKeyId,
    pub prefix: &'a str,
    pub secret_hash: [u8; 32],
    pub at: OffsetDateTime,
}

// The successor keeps name, scopes, allow-list and expiry; the caller must hold every scope.
const HELD_BY_KEY: &str = "SELECT palisade.require_permissions_held(\
    (SELECT k.permissions FROM palisade.api_keys k WHERE k.tenant_id = $1 AND k.id = $2))";
const INSERT_SUCCESSOR: &str = "WITH n AS (INSERT INTO palisade.api_keys \
        (tenant_id, id, name, prefix, secret_hash, permissions, allowed_ips, created_by, created_at, expires_at, rotated_from) \
        SELECT k.tenant_id, $3, k.name, $4, $5, k.permissions, k.allowed_ips, palisade.current_user_id(), $6, k.expires_at, k.id \
          FROM palisade.api_keys k \
         WHERE k.tenant_id = $1 AND k.id = $2 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $6) \
        RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM n))";
const SHORTEN: &str = "UPDATE palisade.api_keys SET expires_at = least(coalesce(expires_at, $3), $3) \
    WHERE tenant_id = $1 AND id = $2";

/// Replaces key `old` with a new secret (`successor`): the old one keeps working until
/// `old_until` (the overlap window, so deployments can switch), never longer than it would have.
/// A revoked or expired key cannot be rotated (404).
pub fn rotate(tx: &mut Tx<Tenant>, org: OrgId, old: ApiKeyId, successor: &Successor<'_>, old_until: OffsetDateTime) {
    tx.push_write(HELD_BY_KEY, vec![Box::new(org.as_uuid()), Box::new(old.as_uuid())]);
    tx.push_write(
        INSERT_SUCCESSOR,
        vec![
            Box::new(org.as_uuid()),
            Box::new(old.as_uuid()),
            Box::new(successor.id.as_uuid()),
            Box::new(successor.prefix.to_owned()),
            Box::new(successor.secret_hash.to_vec()),
            Box::new(successor.at),
        ],
    );
    tx.push_write(SHORTEN, vec![Box::new(org.as_uuid()), Box::new(old.as_uuid()), Box::new(old_until)]);
}
