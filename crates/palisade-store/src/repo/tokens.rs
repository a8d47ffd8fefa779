//! Refresh-token rotation and the access-token signing keys.
//!
//! Refresh tokens are only ever touched through `palisade.rotate_refresh` (their hashes are not
//! readable by the runtime role). Signing keys: the newest unretired, unrevoked `token` key signs;
//! retired keys stay published for verification until the tokens they signed have expired;
//! revoked keys are never published again.

use palisade_core::{SessionId, SessionTokenHash, UserId};
use time::{Duration, OffsetDateTime};

use crate::pipeline::{Anonymous, Step, Tx};
use crate::repo::exactly_one;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationOutcome {
    /// The token was used and its successor stored.
    Rotated,
    /// The token had been used before: the session is now revoked (in this transaction).
    Reused,
}

/// The session a refresh token belongs to, as the new access token needs it.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub outcome: RotationOutcome,
    pub session: SessionId,
    pub user: UserId,
    /// The account's address, given only on reuse (to tell its owner).
    pub email: Option<String>,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
}

const ROTATE: &str = "SELECT outcome, session_id, user_id, email, auth_time, amr \
    FROM palisade.rotate_refresh($1, $2, $3, $4, $5, $6, $7)";

/// Uses refresh token `old` and stores `new` as its successor. On reuse the database revokes the
/// session and writes the audit event `event` with the request's context (see the migration).
pub fn rotate_refresh(
    tx: &mut Tx<Anonymous>,
    old: &SessionTokenHash,
    new: &SessionTokenHash,
    now: OffsetDateTime,
    event: palisade_core::EventId,
    meta: &crate::repo::audit::RequestMeta,
) -> Step<Rotation> {
    let params: Vec<crate::pipeline::Param> = vec![
        Box::new(old.0.to_vec()),
        Box::new(new.0.to_vec()),
        Box::new(now),
        Box::new(event.as_uuid()),
        Box::new(meta.ip),
        Box::new(meta.user_agent.clone()),
        Box::new(meta.request_id.clone()),
    ];
    tx.push(ROTATE, params, |rows| {
        let row = exactly_one(rows)?;
        let outcome: &str = row.get(0);
        Ok(Rotation {
            outcome: if outcome == "reused" { RotationOutcome::Reused } else { RotationOutcome::Rotated },
            session: SessionId::from_uuid(row.get(1)),
            user: UserId::from_uuid(row.get(2)),
            email: row.get(3),
            auth_time: row.get(4),
            amr: row.get(5),
        })
    })
}

/// The setting `rotate_token_key` turns on when it adds a key.
pub const KEY_ROTATED_FLAG: &str = "app.key_rotated";

/// A token signing key as stored.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub key_id: String,
    pub public_key: [u8; 32],
    pub sealed_private: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenKey {
    /// Signs new tokens (the newest such key does).
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none() && self.revoked_at.is_none()
    }
}

const KEY_COLUMNS: &str = "key_id, public_key, sealed_private, created_at, retired_at, revoked_at";

fn decode_keys(rows: Vec<tokio_postgres::Row>) -> Result<Vec<TokenKey>, crate::StoreError> {
    rows.iter()
        .map(|r| {
            let public: Vec<u8> = r.get(1);
            Ok(TokenKey {
                key_id: r.get(0),
                public_key: public.as_slice().try_into().map_err(|_| crate::StoreError::NotFound)?,
                sealed_private: r.get(2),
                created_at: r.get(3),
                retired_at: r.get(4),
                revoked_at: r.get(5),
            })
        })
        .collect()
}

const PUBLISHED: &str = const_format::concatcp!(
    "SELECT ",
    KEY_COLUMNS,
    " FROM palisade.signing_keys WHERE purpose = 'token' AND revoked_at IS NULL \
      AND (retired_at IS NULL OR retired_at > $1::timestamptz - make_interval(secs => $2::float8)) \
    ORDER BY created_at DESC, key_id"
);

/// Keys that verify tokens at `now`: unrevoked, and unretired or retired less than `grace` ago
/// (the longest an access token lives, plus a margin). Newest first.
pub fn published_keys(tx: &mut Tx<Anonymous>, now: OffsetDateTime, grace: Duration) -> Step<Vec<TokenKey>> {
    tx.push(PUBLISHED, vec![Box::new(now), Box::new(grace.as_seconds_f64())], decode_keys)
}

const ALL_KEYS: &str = const_format::concatcp!(
    "SELECT ",
    KEY_COLUMNS,
    " FROM palisade.signing_keys WHERE purpose = 'token' ORDER BY created_at DESC, key_id LIMIT 1000"
);

/// Every token key ever made, newest first (for `palisade keys list`).
pub fn all_keys(tx: &mut Tx<Anonymous>) -> Step<Vec<TokenKey>> {
    tx.push(ALL_KEYS, vec![], decode_keys)
}

const ROTATE_KEY: &str = "SELECT palisade.rotate_token_key($1, $2, $3, $4, \
    CASE WHEN $5::float8 IS NULL THEN NULL ELSE make_interval(secs => $5) END)";

/// A freshly generated key (private part sealed under the instance's data key).
pub struct NewKey {
    pub key_id: String,
    pub public_key: [u8; 32],
    pub sealed_private: Vec<u8>,
}

/// Makes `key` the signing key and retires the others; with `only_if_older`, only when the
/// active key is at least that old (or there is none). Returns whether `key` was added.
pub fn rotate_key(
    tx: &mut Tx<Anonymous>,
    key: NewKey,
    now: OffsetDateTime,
    only_if_older: Option<Duration>,
) -> Step<bool> {
    tx.push(
        ROTATE_KEY,
        vec![
            Box::new(key.key_id),
            Box::new(key.public_key.to_vec()),
            Box::new(key.sealed_private),
            Box::new(now),
            Box::new(only_if_older.map(|d| d.as_seconds_f64())),
        ],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}

const REVOKE_KEY: &str = "WITH revoked AS ( \
        UPDATE palisade.signing_keys SET revoked_at = $2, retired_at = coalesce(retired_at, $2) \
        WHERE key_id = $1 AND purpose = 'token' AND revoked_at IS NULL RETURNING 1) \
    SELECT palisade.require_found((SELECT count(*) FROM revoked))";

/// Revokes token key `key_id` (fails the transaction with "not found" for an unknown, non-token
/// or already revoked key).
pub fn revoke_key(tx: &mut Tx<Anonymous>, key_id: &str, now: OffsetDateTime) {
    tx.push_write(REVOKE_KEY, vec![Box::new(key_id.to_owned()), Box::new(now)]);
}

const CURRENT_BEARER_KEY: &str = "SELECT id, key FROM palisade.bearer_key WHERE retire_after IS NULL";

/// The current bearer key (0037, 0038): its id and bytes. Readable only by the sign-in login:
/// run over its pool.
pub fn current_bearer_key(tx: &mut Tx<Anonymous>) -> Step<(i32, Vec<u8>)> {
    tx.push(CURRENT_BEARER_KEY, vec![], |rows| {
        let row = exactly_one(rows)?;
        Ok((row.get(0), row.get(1)))
    })
}

/// A new bearer key, current from now; the others are accepted for `grace_seconds` more (0038).
/// Only the sign-in login may: run over its pool. Returns the new key's id.
pub fn rotate_bearer_key(tx: &mut Tx<Anonymous>, grace_seconds: i32) -> Step<i32> {
    tx.push(
        "SELECT palisade.rotate_bearer_key($1)",
        vec![Box::new(grace_seconds)],
        |rows| Ok(exactly_one(rows)?.get(0)),
    )
}
