//! Single-use email tokens (verification, password reset): created here, consumed only by the
//! database functions `verify_email` and `enter_reset`.

use palisade_core::{Email, SessionTokenHash, UserId};
use time::{Duration, OffsetDateTime};

use crate::pipeline::{Anonymous, Authenticated, Step, Tx};
use crate::repo::exactly_one;

/// The account an email address belongs to, for deciding whether to send mail.
pub struct Account {
    pub id: UserId,
    pub name: String,
}

const ISSUE_RESET: &str = "INSERT INTO palisade.email_tokens (token_hash, user_id, purpose, email, created_at, expires_at) \
    SELECT $1::bytea, u.id, 'reset_password', u.email, $3::timestamptz, $3::timestamptz + make_interval(secs => $4) \
    FROM palisade.users u WHERE u.email = $2";
const ACCOUNT: &str = "SELECT id, name FROM palisade.users WHERE email = $1";

/// Issues a reset token if the address has an account; the returned step says whether it does.
pub fn issue_reset(
    tx: &mut Tx<Anonymous>,
    email: &Email,
    token: &SessionTokenHash,
    now: OffsetDateTime,
    valid_for: Duration,
) -> Step<Option<Account>> {
    tx.push_write(
        ISSUE_RESET,
        vec![
            Box::new(token.0.to_vec()),
            Box::new(email.as_str().to_owned()),
            Box::new(now),
            Box::new(valid_for.as_seconds_f64()),
        ],
    );
    tx.push(ACCOUNT, vec![Box::new(email.as_str().to_owned())], |rows| {
        Ok(rows.first().map(|r| Account { id: UserId::from_uuid(r.get(0)), name: r.get(1) }))
    })
}

const VERIFY: &str = "SELECT palisade.verify_email($1, $2)";

/// Consumes a verification token (fails in the database with PA410 when it is not valid).
pub fn verify(tx: &mut Tx<Anonymous>, token: &SessionTokenHash, now: OffsetDateTime) -> Step<UserId> {
    tx.push(VERIFY, vec![Box::new(token.0.to_vec()), Box::new(now)], |rows| {
        Ok(UserId::from_uuid(exactly_one(rows)?.get(0)))
    })
}

const ENTER_RESET: &str = "SELECT palisade.enter_reset($1, $2)";
// For the account the reset link names (enter_reset made it the verified caller).
use super::security::SET_PASSWORD;
const UNLOCK: &str = "SELECT palisade.clear_login_attempts(palisade.current_user_id())";
const REVOKE_ALL: &str =
    "UPDATE palisade.sessions SET revoked_at = $1 WHERE user_id = palisade.current_user_id() AND revoked_at IS NULL";
const RESET_ACCOUNT: &str = "SELECT id, email, name FROM palisade.users WHERE id = palisade.current_user_id()";

/// Consumes a reset token, sets the new password (unlocking the account) and revokes every
/// session, all in the same transaction. Returns the account, for the notice email.
pub fn reset_password(
    tx: &mut Tx<Anonymous>,
    token: &SessionTokenHash,
    password_hash: String,
    now: OffsetDateTime,
) -> Step<(UserId, String, String)> {
    tx.push_write(ENTER_RESET, vec![Box::new(token.0.to_vec()), Box::new(now)]);
    tx.push_write(SET_PASSWORD, vec![Box::new(password_hash), Box::new(now)]);
    tx.push_write(UNLOCK, vec![]);
    tx.push_write(REVOKE_ALL, vec![Box::new(now)]);
    tx.push(RESET_ACCOUNT, vec![], |rows| {
        let row = exactly_one(rows)?;
        Ok((UserId::from_uuid(row.get(0)), row.get(1), row.get(2)))
    })
}

const DEVICE_SEEN: &str = "SELECT palisade.device_seen($1, $2)";

/// Whether the user signed in from this user agent before: "first", "known" or "new".
pub fn device_seen<S>(tx: &mut Tx<S>, user: UserId, user_agent: Option<&str>) -> Step<String> {
    tx.push(DEVICE_SEEN, vec![Box::new(user.as_uuid()), Box::new(user_agent.map(str::to_owned))], |rows| {
        Ok(exactly_one(rows)?.get(0))
    })
}

const ISSUE_CHANGE: &str = "INSERT INTO palisade.email_tokens \
        (token_hash, user_id, purpose, email, new_email, created_at, expires_at) \
    SELECT $1::bytea, u.id, 'change_email', u.email, $2, $3::timestamptz, $3::timestamptz + make_interval(secs => $4) \
    FROM palisade.users u WHERE u.id = palisade.current_user_id()";
const ADDRESS_TAKEN: &str = "SELECT EXISTS (SELECT 1 FROM palisade.users WHERE email = $1)";

/// Issues a change-of-address token for the caller; the step says whether `new_email` already
/// belongs to an account (then no link is sent to it, only a notice).
pub fn issue_change(
    tx: &mut Tx<Authenticated>,
    token: &SessionTokenHash,
    new_email: &Email,
    now: OffsetDateTime,
    valid_for: Duration,
) -> Step<bool> {
    tx.push_write(
        ISSUE_CHANGE,
        vec![
            Box::new(token.0.to_vec()),
            Box::new(new_email.as_str().to_owned()),
            Box::new(now),
            Box::new(valid_for.as_seconds_f64()),
        ],
    );
    tx.push(ADDRESS_TAKEN, vec![Box::new(new_email.as_str().to_owned())], |rows| Ok(exactly_one(rows)?.get(0)))
}

const CHANGE: &str = "SELECT palisade.change_email($1, $2)";

/// Consumes a change token and moves the account to its new address; returns the old address.
pub fn change(tx: &mut Tx<Anonymous>, token: &SessionTokenHash, now: OffsetDateTime) -> Step<String> {
    tx.push(CHANGE, vec![Box::new(token.0.to_vec()), Box::new(now)], |rows| Ok(exactly_one(rows)?.get(0)))
}
