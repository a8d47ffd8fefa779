//! Scheduling, cancelling and carrying out an organization's deletion (crypto-shredding). The
//! owner's statements run in the organization's own tenant check; the shredding runs through the
//! key keeper's checked functions (migration 0023).

use palisade_core::OrgId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pipeline::{Anonymous, Step, Tenant, Tx};

const REQUIRE_OWNER: &str = "SELECT palisade.require_role(ARRAY['owner'])";
const NOT_SCHEDULED: &str = "SELECT palisade.require_no_deletion_scheduled($1)";
const SCHEDULE: &str = "UPDATE palisade.orgs SET deletion_due_at = $2, deletion_requested_by = palisade.current_user_id() \
    WHERE tenant_id = $1 AND deletion_due_at IS NULL";

/// Schedules the deletion for `due` (owners only, PA403); a conflict when one already is.
pub fn schedule(tx: &mut Tx<Tenant>, org: OrgId, due: OffsetDateTime) {
    tx.push_write(REQUIRE_OWNER, vec![]);
    tx.push_write(NOT_SCHEDULED, vec![Box::new(org.as_uuid())]);
    tx.push_write(SCHEDULE, vec![Box::new(org.as_uuid()), Box::new(due)]);
}

const CANCEL: &str = "WITH c AS (UPDATE palisade.orgs SET deletion_due_at = NULL, deletion_requested_by = NULL \
        WHERE tenant_id = $1 AND deletion_due_at IS NOT NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM c))";

/// Cancels a scheduled deletion (owners only); not found (and nothing written) when none is.
pub fn cancel(tx: &mut Tx<Tenant>, org: OrgId) {
    tx.push_write(REQUIRE_OWNER, vec![]);
    tx.push_write(CANCEL, vec![Box::new(org.as_uuid())]);
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
