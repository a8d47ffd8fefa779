//! WebAuthn credentials (a user's security keys and passkeys) and the sign-in challenges that
//! carry a WebAuthn ceremony. Row-level security limits the runtime role to the signed-in user's
//! credentials; sign-in reads them through SECURITY DEFINER functions. A credential is stored
//! sealed (`passkey_sealed`, sealed by the app under the instance's data key); rows written
//! before that hold it in clear (`passkey`) until their next use re-stores them sealed.

use palisade_core::{Email, UserId};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::pipeline::{Anonymous, Authenticated, Step, Tx};
use crate::repo::exactly_one;
use crate::repo::users::Lockout;

/// A credential as its owner sees it.
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

const LIST_MINE: &str = "SELECT id, name, created_at, last_used_at FROM palisade.webauthn_credentials \
    WHERE user_id = palisade.current_user_id() ORDER BY created_at, id";

pub fn list_mine(tx: &mut Tx<Authenticated>) -> Step<Vec<CredentialInfo>> {
    tx.push(LIST_MINE, vec![], |rows| {
        Ok(rows
            .iter()
            .map(|r| CredentialInfo { id: r.get(0), name: r.get(1), created_at: r.get(2), last_used_at: r.get(3) })
            .collect())
    })
}

const MY_CREDENTIAL_IDS: &str = "SELECT credential_id FROM palisade.webauthn_credentials \
    WHERE user_id = palisade.current_user_id()";

/// The caller's credential ids (a new registration excludes them: one authenticator, one entry).
pub fn my_credential_ids(tx: &mut Tx<Authenticated>) -> Step<Vec<Vec<u8>>> {
    tx.push(MY_CREDENTIAL_IDS, vec![], |rows| Ok(rows.iter().map(|r| r.get(0)).collect()))
}

/// A stored credential, as sign-in and step-up read it.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// The row's id (a sealed credential is bound to it and to its user).
    pub id: Uuid,
    pub user_id: UserId,
    pub passkey: PasskeyData,
}

/// A credential's webauthn-rs `Passkey`, as stored.
#[derive(Debug, Clone)]
pub enum PasskeyData {
    /// Its JSON sealed under the instance's data key (an envelope).
    Sealed(Vec<u8>),
    /// The clear JSON of a row written before credentials were sealed.
    Clear(Value),
}

fn stored_passkey(row: &tokio_postgres::Row) -> StoredPasskey {
    let passkey = match row.get::<_, Option<Vec<u8>>>(2) {
        Some(sealed) => PasskeyData::Sealed(sealed),
        // A CHECK keeps exactly one of the two set.
        None => PasskeyData::Clear(row.get::<_, Option<Value>>(3).unwrap_or(Value::Null)),
    };
    StoredPasskey { id: row.get(0), user_id: UserId::from_uuid(row.get(1)), passkey }
}

const MY_PASSKEYS: &str = "SELECT id, user_id, passkey_sealed, passkey FROM palisade.webauthn_credentials \
    WHERE user_id = palisade.current_user_id() ORDER BY created_at";

/// The caller's credentials, for a step-up ceremony.
pub fn my_passkeys(tx: &mut Tx<Authenticated>) -> Step<Vec<StoredPasskey>> {
    tx.push(MY_PASSKEYS, vec![], |rows| Ok(rows.iter().map(stored_passkey).collect()))
}

/// A credential to store for the signed-in user.
pub struct NewCredential {
    pub id: Uuid,
    pub name: String,
    pub credential_id: Vec<u8>,
    /// The webauthn-rs `Passkey` JSON sealed under the instance's data key.
    pub passkey_sealed: Vec<u8>,
    pub at: OffsetDateTime,
}

const INSERT: &str = "INSERT INTO palisade.webauthn_credentials \
    (id, user_id, name, credential_id, passkey_sealed, created_at) \
    VALUES ($1, palisade.current_user_id(), $2, $3, $4, $5)";

/// Adds a credential; a name the user already uses or a credential already registered (to
/// anyone) fails the transaction with a conflict.
pub fn insert(tx: &mut Tx<Authenticated>, credential: NewCredential) {
    tx.push_write(
        INSERT,
        vec![
            Box::new(credential.id),
            Box::new(credential.name),
            Box::new(credential.credential_id),
            Box::new(credential.passkey_sealed),
            Box::new(credential.at),
        ],
    );
}

const DELETE_MINE: &str = "WITH d AS (DELETE FROM palisade.webauthn_credentials \
        WHERE id = $1 AND user_id = palisade.current_user_id() RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM d))";

/// Removes one of the caller's credentials (someone else's, or an unknown id: "not found").
pub fn delete_mine(tx: &mut Tx<Authenticated>, id: Uuid) {
    tx.push_write(DELETE_MINE, vec![Box::new(id)]);
}

const SECOND_FACTORS: &str = "SELECT palisade.second_factors($1)";

/// The second factors of the account with `email` (`totp`, `webauthn`); empty when none or no
/// such account.
pub fn second_factors(tx: &mut Tx<Anonymous>, email: &Email) -> Step<Vec<String>> {
    tx.push(SECOND_FACTORS, vec![Box::new(email.as_str().to_owned())], |rows| {
        Ok(rows.first().and_then(|r| r.get::<_, Option<Vec<String>>>(0)).unwrap_or_default())
    })
}

const PASSKEYS_FOR_EMAIL: &str = "SELECT id, user_id, passkey_sealed, passkey FROM palisade.passkeys_for_email($1)";

/// The account's credentials, to build a sign-in ceremony.
pub fn passkeys_for_email(tx: &mut Tx<Anonymous>, email: &Email) -> Step<Vec<StoredPasskey>> {
    tx.push(PASSKEYS_FOR_EMAIL, vec![Box::new(email.as_str().to_owned())], |rows| {
        Ok(rows.iter().map(stored_passkey).collect())
    })
}

const CREATE_CHALLENGE: &str = "INSERT INTO palisade.mfa_challenges \
    (token_hash, user_id, created_at, expires_at, webauthn_state, purpose) \
    VALUES ($1, $2, $3::timestamptz, $3::timestamptz + make_interval(secs => $4), $5, $6)";

/// What a WebAuthn sign-in challenge completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SecondFactor,
    Passwordless,
    /// A signed-in user re-proving themselves before a sensitive action.
    StepUp,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SecondFactor => "second_factor",
            Purpose::Passwordless => "passwordless",
            Purpose::StepUp => "step_up",
        }
    }
}

/// A single-use sign-in challenge carrying a WebAuthn ceremony's state.
pub fn create_challenge(
    tx: &mut Tx<Anonymous>,
    token_hash: &palisade_core::SessionTokenHash,
    user: UserId,
    now: OffsetDateTime,
    valid_for: Duration,
    state: Value,
    purpose: Purpose,
) {
    tx.push_write(
        CREATE_CHALLENGE,
        vec![
            Box::new(token_hash.0.to_vec()),
            Box::new(user.as_uuid()),
            Box::new(now),
            Box::new(valid_for.as_seconds_f64()),
            Box::new(state),
            Box::new(purpose.as_str()),
        ],
    );
}

/// A WebAuthn challenge being answered.
pub struct Challenge {
    pub user_id: UserId,
    pub email: String,
    pub state: Value,
    pub purpose: Purpose,
    /// False when the account is locked: the answer must then be refused whatever it is.
    pub reserved: bool,
    /// This try is the one that locks the account if it fails.
    pub locks_now: bool,
}

const ENTER: &str = "SELECT user_id, email, webauthn_state, purpose, reserved, locks_now \
    FROM palisade.enter_webauthn_challenge($1, $2, $3, $4)";

/// Counts a try of the challenge and reserves a sign-in attempt (see the migration).
pub fn enter_challenge(
    tx: &mut Tx<Anonymous>,
    token_hash: &palisade_core::SessionTokenHash,
    now: OffsetDateTime,
    lockout: Lockout,
) -> Step<Challenge> {
    tx.push(
        ENTER,
        vec![
            Box::new(token_hash.0.to_vec()),
            Box::new(now),
            Box::new(lockout.threshold),
            Box::new(lockout.duration.as_seconds_f64()),
        ],
        |rows| {
            let row = exactly_one(rows)?;
            let purpose: &str = row.get(3);
            Ok(Challenge {
                user_id: UserId::from_uuid(row.get(0)),
                email: row.get(1),
                state: row.get(2),
                purpose: match purpose {
                    "passwordless" => Purpose::Passwordless,
                    "step_up" => Purpose::StepUp,
                    _ => Purpose::SecondFactor,
                },
                reserved: row.get(4),
                locks_now: row.get(5),
            })
        },
    )
}

const COMPLETE: &str = "SELECT palisade.complete_webauthn($1, $2, $3, $4::bytea)";

/// Uses the challenge, stores the credential's new state (`passkey_sealed`, sealed by the
/// caller; a clear legacy `passkey` is dropped), clears the lockout; the user is set for the rest
/// of the transaction (the session created behind it).
pub fn complete<S>(
    tx: &mut Tx<S>,
    token_hash: &palisade_core::SessionTokenHash,
    now: OffsetDateTime,
    credential_id: Vec<u8>,
    passkey_sealed: Vec<u8>,
) {
    tx.push_write(
        COMPLETE,
        vec![Box::new(token_hash.0.to_vec()), Box::new(now), Box::new(credential_id), Box::new(passkey_sealed)],
    );
}
