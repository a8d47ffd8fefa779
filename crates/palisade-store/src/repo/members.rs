//! Invitations, role changes and removals. The rules (never above your own role, only an owner
//! manages an owner, an organization keeps an owner) are SQL functions that raise, so a refused
//! change aborts its whole transaction, audit event included.

use palisade_core::{Email, InvitationId, OrgId, OrgRole, SessionProof, SessionTokenHash, UserId};
use time::{Duration, OffsetDateTime};

use crate::pipeline::{Anonymous, Step, Tenant, Tx};
use crate::repo::exactly_one;

/// Aborts the transaction unless the caller may manage member `user` (PA404 not a member, PA403
/// an owner managed by a non-owner).
pub fn require_outranks(tx: &mut Tx<Tenant>, user: UserId) {
    tx.push_write(REQUIRE_OUTRANKS, vec![Box::new(user.as_uuid())]);
}

const REQUIRE_CAN_GRANT: &str = "SELECT palisade.require_can_grant($1)";
const REQUIRE_OUTRANKS: &str = "SELECT palisade.require_outranks($1)";
const REQUIRE_AN_OWNER: &str = "SELECT palisade.require_an_owner()";

pub struct NewInvitation<'a> {
    pub id: InvitationId,
    pub org: OrgId,
    pub email: &'a Email,
    pub role: OrgRole,
    pub token: SessionTokenHash,
    pub at: OffsetDateTime,
    pub valid_for: Duration,
}

const INVITE: &str = "INSERT INTO palisade.invitations \
        (tenant_id, id, email, role, token_hash, invited_by, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5, palisade.current_user_id(), $6::timestamptz, $6::timestamptz + make_interval(secs => $7))";

pub fn invite(tx: &mut Tx<Tenant>, invitation: NewInvitation<'_>) {
    tx.push_write(REQUIRE_CAN_GRANT, vec![Box::new(invitation.role.as_str())]);
    tx.push_write(
        INVITE,
        vec![
            Box::new(invitation.org.as_uuid()),
            Box::new(invitation.id.as_uuid()),
            Box::new(invitation.email.as_str().to_owned()),
            Box::new(invitation.role.as_str()),
            Box::new(invitation.token.0.to_vec()),
            Box::new(invitation.at),
            Box::new(invitation.valid_for.as_seconds_f64()),
        ],
    );
}

pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: Option<OrgRole>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

const PENDING: &str = "SELECT id, email, role, created_at, expires_at FROM palisade.invitations \
    WHERE tenant_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
    ORDER BY created_at, id LIMIT 1000";

pub fn pending(tx: &mut Tx<Tenant>, org: OrgId, now: OffsetDateTime) -> Step<Vec<Invitation>> {
    tx.push(PENDING, vec![Box::new(org.as_uuid()), Box::new(now)], |rows| {
        Ok(rows
            .iter()
            .map(|r| Invitation {
                id: InvitationId::from_uuid(r.get(0)),
                email: r.get(1),
                role: OrgRole::from_db(r.get(2)),
                created_at: r.get(3),
                expires_at: r.get(4),
            })
            .collect())
    })
}

const REVOKE: &str = "WITH r AS ( \
        UPDATE palisade.invitations SET revoked_at = $3 \
        WHERE tenant_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM r))";

pub fn revoke(tx: &mut Tx<Tenant>, org: OrgId, id: InvitationId, now: OffsetDateTime) {
    tx.push_write(REVOKE, vec![Box::new(org.as_uuid()), Box::new(id.as_uuid()), Box::new(now)]);
}

const ACCEPT: &str = "SELECT tenant_id, role, invitation_id FROM palisade.accept_invitation($1, $2, $3, $4)";

/// Accepts an invitation for the signed-in user (checked in the database, see the migration).
pub fn accept(
    tx: &mut Tx<Anonymous>,
    session: &SessionProof,
    now: OffsetDateTime,
    org: OrgId,
    token: &SessionTokenHash,
) -> Step<(OrgId, Option<OrgRole>, InvitationId)> {
    tx.push(
        ACCEPT,
        vec![Box::new(session.to_db()), Box::new(now), Box::new(org.as_uuid()), Box::new(token.0.to_vec())],
        |rows| {
            let row = exactly_one(rows)?;
            Ok((OrgId::from_uuid(row.get(0)), OrgRole::from_db(row.get(1)), InvitationId::from_uuid(row.get(2))))
        },
    )
}

const CHANGE_ROLE: &str = "WITH c AS ( \
        UPDATE palisade.memberships SET role = $3, custom_role_id = NULL WHERE tenant_id = $1 AND user_id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM c))";

/// Changes a member's role: only an owner touches an owner or grants owner, and the organization
/// keeps at least one owner.
pub fn change_role(tx: &mut Tx<Tenant>, org: OrgId, user: UserId, role: OrgRole) {
    require_outranks(tx, user);
    tx.push_write(REQUIRE_CAN_GRANT, vec![Box::new(role.as_str())]);
    tx.push_write(CHANGE_ROLE, vec![Box::new(org.as_uuid()), Box::new(user.as_uuid()), Box::new(role.as_str())]);
    tx.push_write(REQUIRE_AN_OWNER, vec![]);
}

const REMOVE: &str = "WITH d AS (DELETE FROM palisade.memberships WHERE tenant_id = $1 AND user_id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";

/// Removes a member (their access ends on their next request); the organization keeps an owner.
pub fn remove(tx: &mut Tx<Tenant>, org: OrgId, user: UserId) {
    require_outranks(tx, user);
    tx.push_write(REMOVE, vec![Box::new(org.as_uuid()), Box::new(user.as_uuid())]);
    tx.push_write(REQUIRE_AN_OWNER, vec![]);
}
