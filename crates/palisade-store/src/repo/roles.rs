//! Custom roles: an organization's own named sets of permissions, and giving one to a member.
//! Nobody hands out a permission they do not hold (`require_permissions_held`, in SQL).

use palisade_core::{OrgId, RoleId, UserId};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::pipeline::{Step, Tenant, Tx};
use crate::repo::exactly_one;
use crate::repo::members::require_outranks;

pub struct CustomRole {
    pub id: RoleId,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Members holding it.
    pub members: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

fn from_row(r: &Row) -> CustomRole {
    CustomRole {
        id: RoleId::from_uuid(r.get(0)),
        name: r.get(1),
        description: r.get(2),
        permissions: r.get(3),
        members: r.get(4),
        created_at: r.get(5),
        updated_at: r.get(6),
    }
}

const COLUMNS: &str = "cr.id, cr.name, cr.description, cr.permissions, \
    (SELECT count(*) FROM palisade.memberships m WHERE m.tenant_id = cr.tenant_id AND m.custom_role_id = cr.id), \
    cr.created_at, cr.updated_at";

const HELD: &str = "SELECT palisade.require_permissions_held($1)";
const INSERT: &str = "INSERT INTO palisade.custom_roles (tenant_id, id, name, description, permissions, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $6)";

pub struct RoleDraft<'a> {
    pub org: OrgId,
    pub id: RoleId,
    pub name: &'a str,
    pub description: &'a str,
    pub permissions: &'a [String],
    pub at: OffsetDateTime,
}

pub fn create(tx: &mut Tx<Tenant>, draft: RoleDraft<'_>) {
    tx.push_write(HELD, vec![Box::new(draft.permissions.to_vec())]);
    tx.push_write(
        INSERT,
        vec![
            Box::new(draft.org.as_uuid()),
            Box::new(draft.id.as_uuid()),
            Box::new(draft.name.to_owned()),
            Box::new(draft.description.to_owned()),
            Box::new(draft.permissions.to_vec()),
            Box::new(draft.at),
        ],
    );
}

const UPDATE: &str = "WITH u AS (UPDATE palisade.custom_roles SET name = $3, description = $4, permissions = $5, updated_at = $6 \
        WHERE tenant_id = $1 AND id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM u))";
const HELD_BY_ROLE: &str = "SELECT palisade.require_can_grant_custom($1)";

/// Replaces a role's name, description and permissions: the caller must hold both what the
/// role had and what it gets.
pub fn update(tx: &mut Tx<Tenant>, draft: RoleDraft<'_>) {
    tx.push_write(HELD_BY_ROLE, vec![Box::new(draft.id.as_uuid())]);
    tx.push_write(HELD, vec![Box::new(draft.permissions.to_vec())]);
    tx.push_write(
        UPDATE,
        vec![
            Box::new(draft.org.as_uuid()),
            Box::new(draft.id.as_uuid()),
            Box::new(draft.name.to_owned()),
            Box::new(draft.description.to_owned()),
            Box::new(draft.permissions.to_vec()),
            Box::new(draft.at),
        ],
    );
}

const DELETE: &str = "WITH d AS (DELETE FROM palisade.custom_roles WHERE tenant_id = $1 AND id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";

/// Deletes a role no member holds (the foreign key refuses otherwise).
pub fn delete(tx: &mut Tx<Tenant>, org: OrgId, id: RoleId) {
    tx.push_write(HELD_BY_ROLE, vec![Box::new(id.as_uuid())]);
    tx.push_write(DELETE, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid())]);
}

const LIST: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM palisade.custom_roles cr WHERE cr.tenant_id = $1 ORDER BY cr.name LIMIT 1000"
);

pub fn list(tx: &mut Tx<Tenant>, org: OrgId) -> Step<Vec<CustomRole>> {
    tx.push(LIST, vec![Box::new(org.as_uuid())], |rows| Ok(rows.iter().map(from_row).collect()))
}

const GET: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM palisade.custom_roles cr WHERE cr.tenant_id = $1 AND cr.id = $2"
);

pub fn get(tx: &mut Tx<Tenant>, org: OrgId, id: RoleId) -> Step<CustomRole> {
    tx.push(GET, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid())], |rows| Ok(from_row(&exactly_one(rows)?)))
}

const ASSIGN: &str = "WITH c AS ( \
        UPDATE palisade.memberships SET role = 'custom', custom_role_id = $3 WHERE tenant_id = $1 AND user_id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM c))";
const REQUIRE_AN_OWNER: &str = "SELECT palisade.require_an_owner()";

/// Gives a member a custom role (only an owner touches an owner; the organization keeps one).
pub fn assign(tx: &mut Tx<Tenant>, org: OrgId, user: UserId, role: RoleId) {
    require_outranks(tx, user);
    tx.push_write(HELD_BY_ROLE, vec![Box::new(role.as_uuid())]);
    tx.push_write(ASSIGN, vec![Box::new(org.as_uuid()), Box::new(user.as_uuid()), Box::new(role.as_uuid())]);
    tx.push_write(REQUIRE_AN_OWNER, vec![]);
}

/// One member in an access review.
pub struct ReviewRow {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: String,
    pub custom_role: Option<(RoleId, String)>,
    pub permissions: Vec<String>,
    pub mfa: bool,
    pub last_active_at: Option<OffsetDateTime>,
    pub joined_at: OffsetDateTime,
}

const REVIEW: &str = "SELECT user_id, email, name, role, custom_role_id, custom_role, permissions, mfa, last_active_at, joined_at \
    FROM palisade.access_review()";

/// Every member with role, permissions, second factor and last activity (needs members.manage).
pub fn access_review(tx: &mut Tx<Tenant>) -> Step<Vec<ReviewRow>> {
    tx.push(REVIEW, vec![], |rows| {
        Ok(rows
            .iter()
            .map(|r| ReviewRow {
                user_id: UserId::from_uuid(r.get(0)),
                email: r.get(1),
                name: r.get(2),
                role: r.get(3),
                custom_role: r.get::<_, Option<Uuid>>(4).map(|id| (RoleId::from_uuid(id), r.get(5))),
                permissions: r
                    .get::<_, Option<String>>(6)
                    .map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
                mfa: r.get(7),
                last_active_at: r.get(8),
                joined_at: r.get(9),
            })
            .collect())
    })
}
