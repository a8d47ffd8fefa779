//! Second factors: TOTP enrolment and confirmation, backup codes, sign-in challenges. The checks
//! that must stop a write (replay, single use, lockout) live in SQL functions.

use palisade_core::{Email, SessionTokenHash, UserId};
use time::{Duration, OffsetDateTime};

use crate::pipeline::{Anonymous, Authenticated, Step, Tx};
use crate::repo::users::Lockout;

const START: &str = "WITH up AS ( \
        INSERT INTO palisade.totp_factors (user_id, secret_sealed, created_at) \
        VALUES (palisade.current_user_id(), $1, $2) \
        ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
            created_at = excluded.created_at, last_used_step = NULL \
        WHERE palisade.totp_factors.confirmed_at IS NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM up))";

/// Stores a new, unconfirmed TOTP seed (replacing an unconfirmed one). Fails with "not found"
/// in the database when a confirmed factor already exists.
pub fn start_totp(tx: &mut Tx<Authenticated>, sealed: Vec<u8>, now: OffsetDateTime) {
    tx.push_write(START, vec![Box::new(sealed), Box::new(now)]);
}

/// The caller's TOTP factor: (sealed seed, confirmed).
pub struct Factor {
    pub sealed: Vec<u8>,
    pub confirmed: bool,
}

const FACTOR: &str = "SELECT secret_sealed, confirmed_at IS NOT NULL FROM palisade.totp_factors \
    WHERE user_id = palisade.current_user_id()";

pub fn factor(tx: &mut Tx<Authenticated>) -> Step<Option<Factor>> {
    tx.push(FACTOR, vec![], |rows| Ok(rows.first().map(|r| Factor { sealed: r.get(0), confirmed: r.get(1) })))
}

const CONFIRM: &str = "WITH c AS ( \
        UPDATE palisade.totp_factors SET confirmed_at = $2, last_used_step = $1 \
        WHERE user_id = palisade.current_user_id() AND confirmed_at IS NULL \
          AND (last_used_step IS NULL OR last_used_step < $1) RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM c))";
const CLEAR_CODES: &str = "DELETE FROM palisade.backup_codes WHERE user_id = palisade.current_user_id()";
const INSERT_CODES: &str = "INSERT INTO palisade.backup_codes (user_id, lookup, code_hash) \
    SELECT palisade.current_user_id(), l, h FROM unnest($1::text[], $2::text[]) AS t(l, h)";

/// Confirms the factor with the step its first code matched (so that code cannot be replayed)
/// and replaces the backup codes: (lookup, argon2id hash) pairs.
pub fn confirm_totp(tx: &mut Tx<Authenticated>, step: i64, codes: Vec<(String, String)>, now: OffsetDateTime) {
    let (lookups, hashes): (Vec<String>, Vec<String>) = codes.into_iter().unzip();
    tx.push_write(CONFIRM, vec![Box::new(step), Box::new(now)]);
    tx.push_write(CLEAR_CODES, vec![]);
    tx.push_write(INSERT_CODES, vec![Box::new(lookups), Box::new(hashes)]);
}

const ENABLED_FOR: &str = "SELECT palisade.mfa_enabled_for($1)";

pub fn enabled_for(tx: &mut Tx<Anonymous>, email: &Email) -> Step<bool> {
    tx.push(ENABLED_FOR, vec![Box::new(email.as_str().to_owned())], |rows| {
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(false))
    })
}

const CREATE_CHALLENGE: &str = "INSERT INTO palisade.mfa_challenges (token_hash, user_id, created_at, expires_at) \
    VALUES ($1, $2, $3::timestamptz, $3::timestamptz + make_interval(secs => $4))";

pub fn create_challenge(
    tx: &mut Tx<Anonymous>,
    token: &SessionTokenHash,
    user: UserId,
    now: OffsetDateTime,
    valid_for: Duration,
) {
    tx.push_write(
        CREATE_CHALLENGE,
        vec![Box::new(token.0.to_vec()), Box::new(user.as_uuid()), Box::new(now), Box::new(valid_for.as_seconds_f64())],
    );
}

/// What the second-factor step needs.
pub struct Challenge {
    pub user_id: UserId,
    pub email: String,
    pub sealed: Vec<u8>,
    /// False when the account is locked: no check is made.
    pub reserved: bool,
    pub locks_now: bool,
}

const ENTER_CHALLENGE: &str = "SELECT user_id, email, secret_sealed, reserved, locks_now \
    FROM palisade.enter_mfa_challenge($1, $2, $3, $4)";
const BACKUP_CODE: &str = "SELECT code_hash FROM palisade.backup_codes \
    WHERE user_id = palisade.current_user_id() AND lookup = $1 AND used_at IS NULL";

/// Counts a try on the challenge and reserves an attempt against the lockout (committed even
/// if the code turns out wrong); also fetches the backup code row named by `lookup`, if any.
pub fn enter_challenge(
    tx: &mut Tx<Anonymous>,
    token: &SessionTokenHash,
    now: OffsetDateTime,
    rules: Lockout,
    lookup: Option<String>,
) -> (Step<Option<Challenge>>, Step<Option<String>>) {
    let challenge = tx.push(
        ENTER_CHALLENGE,
        vec![
            Box::new(token.0.to_vec()),
            Box::new(now),
            Box::new(rules.threshold),
            Box::new(rules.duration.as_seconds_f64()),
        ],
        |rows| {
            Ok(rows.first().map(|r| Challenge {
                user_id: UserId::from_uuid(r.get(0)),
                email: r.get(1),
                sealed: r.get(2),
                reserved: r.get(3),
                locks_now: r.get(4),
            }))
        },
    );
    let code =
        tx.push(BACKUP_CODE, vec![Box::new(lookup.unwrap_or_default())], |rows| Ok(rows.first().map(|r| r.get(0))));
    (challenge, code)
}

const COMPLETE: &str = "SELECT palisade.complete_mfa($1, $2, $3, $4)";

/// Uses the challenge and the TOTP step (or backup code) once, clears failures, and acts as the
/// user for the rest of the transaction (the session creation queued behind it).
pub fn complete(
    tx: &mut Tx<Anonymous>,
    token: &SessionTokenHash,
    now: OffsetDateTime,
    step: Option<i64>,
    backup_lookup: Option<String>,
) {
    tx.push_write(COMPLETE, vec![Box::new(token.0.to_vec()), Box::new(now), Box::new(step), Box::new(backup_lookup)]);
}
