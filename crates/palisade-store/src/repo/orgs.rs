//! Organizations and memberships: tenant tables, reachable only through `Tx<Tenant>` (plus the
//! caller's own list, which row-level security limits to their memberships).

use palisade_core::{OrgId, OrgName, OrgRole, Plan, UserId};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::pipeline::{Anonymous, Authenticated, Step, Tenant, Tx};
use crate::repo::exactly_one;

#[derive(Clone, Debug)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The caller's role in this organization.
    pub my_role: Option<OrgRole>,
    /// Inactivity timeout for this organization; `None` = the instance default.
    pub session_idle_minutes: Option<i64>,
    /// Who must use a second factor here: "off", "admins" (owners and admins) or "all".
    pub mfa_policy: String,
    /// Days audit events are kept (read with the organization itself, not in lists).
    pub audit_retention_days: Option<i32>,
    /// While set, no audit event is purged.
    pub legal_hold: Option<bool>,
    /// The plan tier (read with the organization itself, not in lists).
    pub plan: Option<Plan>,
    /// Browser origins allowed to call this organization's API routes (CORS; read with the
    /// organization itself, not in lists).
    pub cors_origins: Option<Vec<String>>,
    /// When the organization's scheduled deletion happens (read with the organization itself).
    pub deletion_due_at: Option<OffsetDateTime>,
}

fn org_from_row(row: &Row) -> Org {
    Org {
        id: OrgId::from_uuid(row.get(0)),
        name: row.get(1),
        created_at: row.get(2),
        updated_at: row.get(3),
        my_role: OrgRole::from_db(row.get(4)),
        session_idle_minutes: row.get::<_, Option<f64>>(5).map(|secs| (secs / 60.0).round() as i64),
        mfa_policy: row.get(6),
        audit_retention_days: row.try_get(7).ok(),
        legal_hold: row.try_get(8).ok(),
        plan: row.try_get::<_, String>(9).ok().as_deref().and_then(Plan::parse),
        cors_origins: row.try_get(10).ok(),
        deletion_due_at: row.try_get(11).ok().flatten(),
    }
}

const INSERT_ORG: &str = "INSERT INTO palisade.orgs (tenant_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)";
const INSERT_OWNER: &str = "INSERT INTO palisade.memberships (tenant_id, user_id, role, created_at) \
    VALUES ($1, palisade.current_user_id(), 'owner', $2)";

/// Creates the organization and makes the session's user its owner.
pub fn create(tx: &mut Tx<Tenant>, id: OrgId, name: &OrgName, at: OffsetDateTime) {
    tx.push_write(INSERT_ORG, vec![Box::new(id.as_uuid()), Box::new(name.as_str().to_owned()), Box::new(at)]);
    tx.push_write(INSERT_OWNER, vec![Box::new(id.as_uuid()), Box::new(at)]);
}

const COLUMNS: &str = "tenant_id, name, created_at, updated_at, current_setting('app.role', true), \
    extract(epoch FROM session_idle_timeout)::float8, mfa_policy, audit_retention_days, legal_hold, plan, cors_origins, deletion_due_at";
const GET: &str = const_format::concatcp!("SELECT ", COLUMNS, " FROM palisade.orgs WHERE tenant_id = $1");

pub fn get(tx: &mut Tx<Tenant>, id: OrgId) -> Step<Org> {
    tx.push(GET, vec![Box::new(id.as_uuid())], |rows| Ok(org_from_row(&exactly_one(rows)?)))
}

/// A change of settings; `None` leaves a setting as it is.
pub struct OrgChange<'a> {
    pub name: Option<&'a OrgName>,
    /// `Some(None)` goes back to the instance default.
    pub session_idle_minutes: Option<Option<i32>>,
    pub mfa_policy: Option<&'static str>,
    pub audit_retention_days: Option<i32>,
    pub legal_hold: Option<bool>,
    pub cors_origins: Option<&'a [String]>,
}

const UPDATE: &str = const_format::concatcp!(
    "UPDATE palisade.orgs SET name = coalesce($2, name), \
        session_idle_timeout = CASE WHEN $3 THEN make_interval(mins => $4) ELSE session_idle_timeout END, \
        mfa_policy = coalesce($6, mfa_policy), audit_retention_days = coalesce($7, audit_retention_days), \
        legal_hold = coalesce($8, legal_hold), cors_origins = coalesce($9, cors_origins), updated_at = $5 \
        WHERE tenant_id = $1 RETURNING ",
    COLUMNS
);

pub fn update(tx: &mut Tx<Tenant>, id: OrgId, change: &OrgChange<'_>, at: OffsetDateTime) -> Step<Org> {
    // Turning a policy on that covers the caller needs the caller to have a second factor,
    // or they would lock themselves (and the org) out.
    if change.mfa_policy.is_some_and(|p| p != "off") {
        tx.push_write(REQUIRE_OWN_MFA, vec![]);
    }
    tx.push(
        UPDATE,
        vec![
            Box::new(id.as_uuid()),
            Box::new(change.name.map(|n| n.as_str().to_owned())),
            Box::new(change.session_idle_minutes.is_some()),
            Box::new(change.session_idle_minutes.flatten()),
            Box::new(at),
            Box::new(change.mfa_policy),
            Box::new(change.audit_retention_days),
            Box::new(change.legal_hold),
            Box::new(change.cors_origins.map(<[String]>::to_vec)),
        ],
        |rows| Ok(org_from_row(&exactly_one(rows)?)),
    )
}

const REQUIRE_OWN_MFA: &str = "SELECT palisade.require_own_mfa()";

const LIST_MINE: &str = "SELECT tenant_id, name, created_at, updated_at, role, session_idle_seconds, mfa_policy \
    FROM palisade.my_orgs() ORDER BY created_at, tenant_id LIMIT 1000";

/// The organizations the session's user belongs to.
pub fn list_mine(tx: &mut Tx<Authenticated>) -> Step<Vec<Org>> {
    tx.push(LIST_MINE, vec![], |rows| Ok(rows.iter().map(org_from_row).collect()))
}

pub struct Member {
    pub user_id: UserId,
    pub name: String,
    pub email: String,
    pub role: Option<OrgRole>,
    pub joined_at: OffsetDateTime,
}

const MEMBERS: &str = "SELECT m.user_id, u.name, u.email, m.role, m.created_at \
    FROM palisade.memberships m JOIN palisade.users u ON u.id = m.user_id \
    WHERE m.tenant_id = $1 ORDER BY m.created_at, m.user_id LIMIT 5000";

pub fn members(tx: &mut Tx<Tenant>, id: OrgId) -> Step<Vec<Member>> {
    tx.push(MEMBERS, vec![Box::new(id.as_uuid())], |rows| {
        Ok(rows
            .iter()
            .map(|row| Member {
                user_id: UserId::from_uuid(row.get(0)),
                name: row.get(1),
                email: row.get(2),
                role: OrgRole::from_db(row.get(3)),
                joined_at: row.get(4),
            })
            .collect())
    })
}

const EDGE: &str = "SELECT plan, cors_origins FROM palisade.org_edge_settings($1)";

/// What the edge needs before any session is checked: the plan tier (rate limits) and the
/// allowed browser origins (CORS). Unknown organizations: standard, none.
pub fn edge_settings(tx: &mut Tx<Anonymous>, id: OrgId) -> Step<(Plan, Vec<String>)> {
    tx.push(EDGE, vec![Box::new(id.as_uuid())], |rows| {
        Ok(rows
            .first()
            .map(|r| {
                let plan: String = r.get(0);
                (Plan::parse(&plan).unwrap_or_default(), r.get(1))
            })
            .unwrap_or_default())
    })
}

const SET_PLAN: &str = "SELECT palisade.set_org_plan($1, $2, $3)";

/// Sets an organization's plan (the session's user must be an instance administrator); the
/// step's value is the previous plan. The transaction is in that organization's tenant after it.
pub fn set_plan(tx: &mut Tx<Authenticated>, id: OrgId, plan: Plan, at: OffsetDateTime) -> Step<Plan> {
    tx.push(SET_PLAN, vec![Box::new(id.as_uuid()), Box::new(plan.as_str()), Box::new(at)], |rows| {
        let text: Option<String> = rows.first().and_then(|r| r.get(0));
        Ok(text.as_deref().and_then(Plan::parse).unwrap_or_default())
    })
}
