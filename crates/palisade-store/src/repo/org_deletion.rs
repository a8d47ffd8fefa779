//! Scheduling, cancelling and carrying out an organization's deletion (crypto-shredding). The
//! owner's statements run in the organization's own tenant check; the shredding runs through the
//! key keeper's checked functions (migration 0023).

use palisade_core::OrgId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pipeline::{Anonymous, Step, Tenant, Tx};

const REQUIRE_OWNER: &str = "SELECT palisade.require_role(ARRAY['owner'])";
const SCHEDULE: &str = "SELECT palisade.schedule_org_deletion($1, make_interval(secs => $2))";

/// Schedules the deletion `grace` from now by the database's clock, at least a day (owners only,
/// PA403); a conflict (PADL1) when one already is. Returns when it falls due.
pub fn schedule(tx: &mut Tx<Tenant>, org: OrgId, grace: time::Duration) -> Step<OffsetDateTime> {
    tx.push_write(REQUIRE_OWNER, vec![]);
    tx.push(SCHEDULE, vec![Box::new(org.as_uuid()), Box::new(grace.as_seconds_f64())], |rows| {
        Ok(crate::repo::exactly_one(rows)?.get(0))
    })
}

const CANCEL: &str = "SELECT palisade.cancel_org_deletion($1)";

/// Cancels a scheduled deletion (owners only) that the job has not started; not found (and
/// nothing written) otherwise.
pub fn cancel(tx: &mut Tx<Tenant>, org: OrgId) {
    tx.push_write(REQUIRE_OWNER, vec![]);
    tx.push_write(CANCEL, vec![Box::new(org.as_uuid())]);
}

const BEGIN: &str = "SELECT palisade.begin_shredding($1, $2)";

/// Claims a due organization for shredding: no cancel from now on (PA403 if not due).
pub fn begin(tx: &mut Tx<Anonymous>, org: OrgId, now: OffsetDateTime) {
    tx.push_write(BEGIN, vec![Box::new(org.as_uuid()), Box::new(now)]);
}

/// An organization whose grace period is over.
#[derive(Debug, Clone)]
pub struct DueOrg {
    pub org: OrgId,
    pub name: String,
    /// The highest generation of its wrapping keys (every one up to it is destroyed).
    pub generations: i32,
}

const DUE: &str = "SELECT tenant_id, name, generations FROM palisade.orgs_due_for_shredding($1, $2)";

pub fn due(tx: &mut Tx<Anonymous>, now: OffsetDateTime, max: i32) -> Step<Vec<DueOrg>> {
    tx.push(DUE, vec![Box::new(now), Box::new(max)], |rows| {
        Ok(rows
            .iter()
            .map(|r| DueOrg { org: OrgId::from_uuid(r.get(0)), name: r.get(1), generations: r.get(2) })
            .collect())
    })
}

const SHRED: &str = "SELECT palisade.shred_org($1, $2, $3)";

/// Deletes every row of the organization (its wrapping keys must be destroyed first).
pub fn shred(tx: &mut Tx<Anonymous>, org: OrgId, now: OffsetDateTime, event: Uuid) {
    tx.push_write(SHRED, vec![Box::new(org.as_uuid()), Box::new(now), Box::new(event)]);
}
