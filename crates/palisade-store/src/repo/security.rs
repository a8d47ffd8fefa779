//! Step-up (recent authentication) and the account changes it guards. The recency check is a
//! SQL function that raises, so nothing queued behind it runs when it fails.

use time::{Duration, OffsetDateTime};

use crate::pipeline::{Authenticated, Step, Tx};

const REQUIRE_RECENT: &str = "SELECT palisade.require_recent_auth($1, $2)";

/// Aborts the transaction (PASU1) unless the session authenticated within `window`.
pub fn require_recent_auth<S>(tx: &mut Tx<S>, now: OffsetDateTime, window: Duration) {
    tx.push_write(REQUIRE_RECENT, vec![Box::new(now), Box::new(window.as_seconds_f64())]);
}

const MARK: &str = "UPDATE palisade.sessions SET authenticated_at = $1 WHERE id = palisade.current_session_id()";

pub fn mark_authenticated(tx: &mut Tx<Authenticated>, now: OffsetDateTime) {
    tx.push_write(MARK, vec![Box::new(now)]);
}

const USE_STEP: &str = "WITH u AS ( \
        UPDATE palisade.totp_factors SET last_used_step = $1 \
        WHERE user_id = palisade.current_user_id() AND confirmed_at IS NOT NULL \
          AND (last_used_step IS NULL OR last_used_step < $1) RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM u))";

/// Accepts a TOTP step once (a replay fails the transaction).
pub fn use_totp_step(tx: &mut Tx<Authenticated>, step: i64) {
    tx.push_write(USE_STEP, vec![Box::new(step)]);
}

const OWN_BACKUP_CODE: &str = "SELECT code_hash FROM palisade.backup_codes \
    WHERE user_id = palisade.current_user_id() AND lookup = $1 AND used_at IS NULL";

pub fn own_backup_code(tx: &mut Tx<Authenticated>, lookup: &str) -> Step<Option<String>> {
    tx.push(OWN_BACKUP_CODE, vec![Box::new(lookup.to_owned())], |rows| Ok(rows.first().map(|r| r.get(0))))
}

const USE_BACKUP: &str = "WITH u AS ( \
        UPDATE palisade.backup_codes SET used_at = $2 \
        WHERE user_id = palisade.current_user_id() AND lookup = $1 AND used_at IS NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM u))";

pub fn use_backup_code(tx: &mut Tx<Authenticated>, lookup: &str, now: OffsetDateTime) {
    tx.push_write(USE_BACKUP, vec![Box::new(lookup.to_owned()), Box::new(now)]);
}

const DELETE_FACTOR: &str = "WITH d AS (DELETE FROM palisade.totp_factors WHERE user_id = palisade.current_user_id() RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";
const DELETE_CODES: &str = "DELETE FROM palisade.backup_codes WHERE user_id = palisade.current_user_id()";

/// Removes the caller's TOTP factor and backup codes ("not found" if there is none).
pub fn disable_totp(tx: &mut Tx<Authenticated>) {
    tx.push_write(DELETE_FACTOR, vec![]);
    tx.push_write(DELETE_CODES, vec![]);
}

/// Only for the verified caller (0042: the runtime role may not write password hashes itself).
pub(crate) const SET_PASSWORD: &str = "SELECT palisade.set_own_password($1, $2)";
const REVOKE_OTHERS: &str = "UPDATE palisade.sessions SET revoked_at = $1 \
    WHERE user_id = palisade.current_user_id() AND id <> palisade.current_session_id() AND revoked_at IS NULL";

/// Sets the caller's password and signs out every other session.
pub fn set_own_password(tx: &mut Tx<Authenticated>, hash: String, now: OffsetDateTime) {
    tx.push_write(SET_PASSWORD, vec![Box::new(hash), Box::new(now)]);
    tx.push_write(REVOKE_OTHERS, vec![Box::new(now)]);
}
