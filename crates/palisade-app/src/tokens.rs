//! Sessions as clients hold them: a sign-in opens a session and hands out its credentials (a
//! browser cookie token, a short-lived signed access token, a refresh token); a refresh uses
//! the refresh token once and hands out the next pair. A refresh token presented twice means
//! someone else has a copy: the whole session ends, it is audited, and its owner is told.

use palisade_auth::jwt::AccessClaims;
use palisade_auth::{REFRESH_TOKEN_PREFIX, SessionToken, hash_token};
use palisade_core::{SessionId, UserId};
use palisade_store::repo::audit::{self, Actor, RequestMeta};
use palisade_store::repo::tokens::{self, RotationOutcome};
use palisade_store::repo::users::{self, NewSession};
use palisade_store::{Anonymous, StoreError, Tx};
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::mail::Notice;
use crate::{App, AppError};

/// Authentication methods (RFC 8176) of a password sign-in, and of one completed with a TOTP
/// or backup code.
pub const AMR_PASSWORD: &[&str] = &["pwd"];
pub const AMR_PASSWORD_OTP: &[&str] = &["pwd", "otp", "mfa"];

/// The API-client half of a sign-in or refresh.
pub struct TokenGrant {
    pub access_token: SecretString,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: SecretString,
}

/// Everything a sign-in hands out.
pub struct LoginOutput {
    pub grant: TokenGrant,
    /// The browser's session cookie value (opaque; only its hash is stored).
    pub session_token: SecretString,
    /// Seconds until the cookie's session ends.
    pub cookie_max_age: i64,
    pub user_id: UserId,
}

/// A session added to a sign-in transaction, waiting for its commit.
pub(crate) struct OpenedSession {
    cookie: SessionToken,
    refresh: SessionToken,
    session: SessionId,
    user: UserId,
    amr: &'static [&'static str],
    at: OffsetDateTime,
}

impl App {
    /// Adds a new session for `user` (with its first refresh token) and its `user.login` event
    /// to a sign-in transaction, which must run over `sign_in_db()`: only the sign-in login may
    /// insert sessions (0036).
    pub(crate) fn open_session(
        &self,
        tx: &mut Tx<Anonymous>,
        user: UserId,
        amr: &'static [&'static str],
        details: serde_json::Value,
        meta: &RequestMeta,
    ) -> OpenedSession {
        let cookie = SessionToken::mint(&*self.random);
        let refresh = SessionToken::mint_prefixed(&*self.random, REFRESH_TOKEN_PREFIX);
        let session = SessionId::new(&*self.clock, &*self.random);
        let at = self.clock.now();
        users::create_session(
            tx,
            NewSession {
                id: session,
                user_id: user,
                token_hash: cookie.hash,
                at,
                lifetime: self.policy.session_lifetime,
                idle_timeout: self.policy.session_idle_timeout,
                ip: meta.ip,
                user_agent: meta.user_agent.clone(),
                refresh_hash: refresh.hash,
                refresh_lifetime: self.policy.refresh_lifetime,
                amr: amr.to_vec(),
            },
        );
        audit::record(
            tx,
            self.audit("user.login", meta)
                .actor(Actor::User(user.as_uuid()))
                .target("session", session.as_uuid())
                .details(details),
        );
        OpenedSession { cookie, refresh, session, user, amr, at }
    }

    /// The credentials of a session whose transaction committed.
    pub(crate) async fn login_output(&self, opened: OpenedSession) -> Result<LoginOutput, AppError> {
        let amr: Vec<String> = opened.amr.iter().map(|m| (*m).to_owned()).collect();
        let access = self.access_token(opened.session, opened.user, opened.at, amr).await?;
        Ok(LoginOutput {
            grant: TokenGrant {
                access_token: access,
                expires_in: self.policy.access_token_ttl.whole_seconds(),
                refresh_token: opened.refresh.token,
            },
            session_token: opened.cookie.token,
            cookie_max_age: self.policy.session_lifetime.whole_seconds(),
            user_id: opened.user,
        })
    }

    async fn access_token(
        &self,
        session: SessionId,
        user: UserId,
        auth_time: OffsetDateTime,
        amr: Vec<String>,
    ) -> Result<SecretString, AppError> {
        let now = self.clock.now();
        let claims = AccessClaims {
            iss: self.tokens.issuer().to_owned(),
            aud: self.tokens.audience().to_owned(),
            sub: user.to_string(),
            sid: session.to_string(),
            amr,
            auth_time: auth_time.unix_timestamp(),
            iat: now.unix_timestamp(),
            exp: (now + self.policy.access_token_ttl).unix_timestamp(),
            jti: palisade_core::ids::new_uuid_v7(&*self.clock, &*self.random).simple().to_string(),
        };
        Ok(SecretString::from(self.sign_access_token(&claims).await?))
    }

    /// `POST /auth/refresh`: uses `presented` once and returns the next access and refresh
    /// tokens. Unknown tokens, dead sessions and reused tokens all answer "not signed in"; a
    /// reused one also ends the session (audited in the same transaction) and emails its owner.
    pub async fn refresh(&self, presented: &str, meta: &RequestMeta) -> Result<TokenGrant, AppError> {
        if !presented.starts_with(REFRESH_TOKEN_PREFIX) || presented.len() > 100 {
            return Err(AppError::Unauthenticated);
        }
        let next = SessionToken::mint_prefixed(&*self.random, REFRESH_TOKEN_PREFIX);
        let now = self.clock.now();
        let mut tx = Tx::anonymous();
        // On reuse the database writes the event itself (only it knows whose token it was).
        let event = palisade_core::EventId::new(&*self.clock, &*self.random);
        let rotation = tokens::rotate_refresh(&mut tx, &hash_token(presented), &next.hash, now, event, meta);
        let rotation = match tx.run(&self.db).await {
            Ok(mut results) => results.get(rotation)?,
            Err(StoreError::Unauthenticated) => return Err(AppError::Unauthenticated),
            Err(other) => return Err(other.into()),
        };
        if rotation.outcome == RotationOutcome::Reused {
            tracing::warn!(session = %rotation.session, "a used refresh token was presented again; session revoked");
            if let Some(email) = rotation.email.as_deref() {
                self.send_notice(email, Notice::RefreshTokenReused);
            }
            return Err(AppError::Unauthenticated);
        }
        let access = self.access_token(rotation.session, rotation.user, rotation.auth_time, rotation.amr).await?;
        Ok(TokenGrant {
            access_token: access,
            expires_in: self.policy.access_token_ttl.whole_seconds(),
            refresh_token: next.token,
        })
    }
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}
