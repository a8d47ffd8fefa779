//! The signed-in user's own sessions: list, revoke one, revoke all others. Row-level security on
//! `sessions` limits the runtime role to the user set by `enter_session`.

use palisade_core::{OrgId, SessionId, UserId};
use time::OffsetDateTime;

use crate::pipeline::{Authenticated, Step, Tenant, Tx};
use crate::repo::exactly_one;

pub struct SessionInfo {
    pub id: SessionId,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub current: bool,
}

const LIST: &str = "SELECT id, created_at, last_seen_at, ip, user_agent, id = palisade.current_session_id() \
    FROM palisade.sessions \
    WHERE user_id = palisade.current_user_id() AND revoked_at IS NULL AND coalesce(refresh_expires_at, expires_at) > $1 \
      AND last_seen_at + idle_timeout > $1 \
    ORDER BY last_seen_at DESC, id LIMIT 500";

pub fn list_mine(tx: &mut Tx<Authenticated>, now: OffsetDateTime) -> Step<Vec<SessionInfo>> {
    tx.push(LIST, vec![Box::new(now)], |rows| {
        Ok(rows
            .iter()
            .map(|r| SessionInfo {
                id: SessionId::from_uuid(r.get(0)),
                created_at: r.get(1),
                last_seen_at: r.get(2),
                ip: r.get(3),
                user_agent: r.get(4),
                current: r.get(5),
            })
            .collect())
    })
}

const REVOKE_ONE: &str = "WITH revoked AS ( \
        UPDATE palisade.sessions SET revoked_at = $2 \
        WHERE id = $1 AND user_id = palisade.current_user_id() AND revoked_at IS NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM revoked))";

/// Revokes one of the caller's sessions; someone else's (or an unknown) id fails the
/// transaction in the database with "not found".
pub fn revoke_mine(tx: &mut Tx<Authenticated>, id: SessionId, now: OffsetDateTime) {
    tx.push_write(REVOKE_ONE, vec![Box::new(id.as_uuid()), Box::new(now)]);
}

const REVOKE_OTHERS: &str = "WITH revoked AS ( \
        UPDATE palisade.sessions SET revoked_at = $1 \
        WHERE user_id = palisade.current_user_id() AND id <> palisade.current_session_id() AND revoked_at IS NULL \
        RETURNING 1) \
    SELECT count(*) FROM revoked";

/// "Sign out everywhere else": revokes every session of the caller but the current one.
pub fn revoke_others(tx: &mut Tx<Authenticated>, now: OffsetDateTime) -> Step<i64> {
    tx.push(REVOKE_OTHERS, vec![Box::new(now)], |rows| Ok(exactly_one(rows)?.get(0)))
}

const CUT_OFF_MEMBER: &str = "WITH cut AS ( \
        UPDATE palisade.memberships SET sessions_not_before = $3 WHERE tenant_id = $1 AND user_id = $2 RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM cut))";

/// Ends a member's existing sessions for this organization (they must sign in again to reach
/// it). Fails in the database if the member does not exist or outranks the caller.
pub fn cut_off_member(tx: &mut Tx<Tenant>, org: OrgId, user: UserId, now: OffsetDateTime) {
    crate::repo::members::require_outranks(tx, user);
    tx.push_write(CUT_OFF_MEMBER, vec![Box::new(org.as_uuid()), Box::new(user.as_uuid()), Box::new(now)]);
}
