//! Sign-up, sign-in, sign-out and the caller's own account.

use palisade_auth::{SessionToken, VERIFY_TOKEN_PREFIX, check_strength};
use palisade_core::{Email, EventId, Password, PersonName, SessionId, SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, Actor, Outcome, RequestMeta};
use palisade_store::repo::email_tokens;
use palisade_store::repo::sessions::{self, SessionInfo};
use palisade_store::repo::users::{self, Me, NewUser};
use palisade_store::repo::webauthn::{self as webauthn_repo, Purpose};
use palisade_store::{Anonymous, Tx};
use secrecy::SecretString;
use serde_json::json;

use crate::mail::Notice;
use crate::tokens::{AMR_PASSWORD, LoginOutput};
use crate::{App, AppError};

/// How long a run of failed sign-ins for an address is remembered after its last failure.
pub const LOGIN_ATTEMPTS_KEPT: time::Duration = time::Duration::days(1);

pub struct SignupInput {
    pub email: String,
    pub password: SecretString,
    pub name: String,
}

pub struct LoginInput {
    pub email: String,
    pub password: SecretString,
}

/// What a password sign-in leads to.
pub enum LoginOutcome {
    /// Signed in.
    Session(LoginOutput),
    /// The password was right; a second factor is needed (`POST /auth/mfa` with a code, or
    /// `POST /auth/webauthn` with a security key answering `webauthn`'s options).
    MfaRequired { challenge: SecretString, methods: Vec<&'static str>, webauthn: Option<serde_json::Value> },
}

/// Collects every field error at once, so the client can fix them in one go.
fn parse_all<A, B, C>(
    a: Result<A, ValidationError>,
    b: Result<B, ValidationError>,
    c: Result<C, ValidationError>,
) -> Result<(A, B, C), AppError> {
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => Err(AppError::Validation([a.err(), b.err(), c.err()].into_iter().flatten().collect())),
    }
}

impl App {
    /// Creates an account. An email that is already registered gets the same answer after the
    /// same work, and changes nothing but an audit trace.
    pub async fn sign_up(&self, input: SignupInput, meta: &RequestMeta) -> Result<(), AppError> {
        let (email, name, password) =
            parse_all(Email::parse(&input.email), PersonName::parse(&input.name), Password::parse(input.password))?;
        check_strength(&password, &[email.as_str(), name.as_str()])?;
        let password_hash = self.hasher.hash(&password).await?;
        let verification = SessionToken::mint_prefixed(&*self.random, VERIFY_TOKEN_PREFIX);
        let now = self.clock.now();
        let mut tx = Tx::anonymous();
        let created = users::sign_up(
            &mut tx,
            NewUser {
                id: UserId::new(&*self.clock, &*self.random),
                email: &email,
                name: &name,
                password_hash,
                at: now,
                event: EventId::new(&*self.clock, &*self.random),
                verification: verification.hash,
                verification_valid_for: self.policy.verification_valid_for,
            },
            meta,
        );
        // Creating an account and its verification token: the sign-in login's (0042).
        let mut results = tx.run(self.sign_in_db()?).await?;
        // Either way exactly one email goes out, in the background: the answer and its timing
        // are the same for a new and a taken address.
        if results.get(created)? {
            self.send_verification(email.as_str(), name.as_str(), verification.expose());
        } else {
            self.send_notice(email.as_str(), Notice::SignupAttempt);
        }
        Ok(())
    }

    /// Checks the password and opens a session. Unknown email, wrong password and locked account
    /// are one answer, reached after the same work (one argon2id verification).
    pub async fn log_in(&self, input: LoginInput, meta: &RequestMeta) -> Result<LoginOutcome, AppError> {
        // A malformed email cannot belong to an account; treat it exactly like an unknown one.
        let email = Email::parse(&input.email).ok();
        let (reserved, known_user, factors, passkeys) = match &email {
            Some(email) => {
                let mut tx = Tx::anonymous();
                let reservation = users::reserve_login(&mut tx, email, self.clock.now(), self.policy.lockout);
                let factors = webauthn_repo::second_factors(&mut tx, email);
                let passkeys = webauthn_repo::passkeys_for_email(&mut tx, email);
                // Reading a password hash: the sign-in login's (0042).
                let mut results = tx.run(self.sign_in_db()?).await?;
                let (reserved, id) = results.get(reservation)?;
                (reserved, id, results.get(factors)?, results.get(passkeys)?)
            }
            None => (None, None, Vec::new(), Vec::new()),
        };
        let verification =
            self.hasher.verify(&input.password, reserved.as_ref().map(|c| c.password_hash.as_str())).await?;
        let credentials = match reserved {
            Some(credentials) if verification.matches => credentials,
            reserved => return Err(self.record_failed_login(email.as_ref(), known_user, reserved, meta).await),
        };
        // With a second factor the attempt stays counted until that factor is given too: knowing
        // the password must not reset the budget for guessing codes.
        if !factors.is_empty() {
            let totp = factors.iter().any(|f| f == "totp");
            let mut methods = if totp { vec!["totp", "backup_code"] } else { Vec::new() };
            // With a security key the challenge carries its ceremony (and still takes codes).
            let (challenge, webauthn) = if passkeys.is_empty() {
                (self.issue_challenge(credentials.user_id, meta).await?, None)
            } else {
                methods.push("webauthn");
                let (challenge, options) =
                    self.issue_webauthn_challenge(credentials.user_id, &passkeys, Purpose::SecondFactor, meta).await?;
                (challenge, Some(options))
            };
            return Ok(LoginOutcome::MfaRequired { challenge, methods, webauthn });
        }
        // A legacy (imported bcrypt) or outdated hash is replaced now that we hold the password.
        let upgraded = match verification.needs_rehash {
            true => Some(self.hasher.rehash(&input.password).await?),
            false => None,
        };
        let mut tx = Tx::<Anonymous>::anonymous();
        users::clear_failures(&mut tx, credentials.user_id);
        if let Some(new_hash) = upgraded {
            users::upgrade_hash(&mut tx, credentials.user_id, &credentials.password_hash, new_hash);
            audit::record(
                &mut tx,
                self.audit("user.password_rehashed", meta)
                    .actor(Actor::User(credentials.user_id.as_uuid()))
                    .target("user", credentials.user_id.as_uuid())
                    .details(json!({"to": "argon2id"})),
            );
        }
        let device = email_tokens::device_seen(&mut tx, credentials.user_id, meta.user_agent.as_deref());
        let opened = self.open_session(&mut tx, credentials.user_id, AMR_PASSWORD, json!({"method": "password"}), meta);
        // Opening a session: the sign-in login's pool (the runtime role may not, 0036).
        let device = tx.run(self.sign_in_db()?).await?.get(device)?;
        if let (Some(email), "new") = (&email, device.as_str()) {
            let label = meta.user_agent.as_deref().unwrap_or("an unknown browser");
            let ip = meta.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "an unknown address".into());
            self.send_notice(email.as_str(), Notice::NewSignIn { device: label, ip: &ip });
        }
        Ok(LoginOutcome::Session(self.login_output(opened).await?))
    }

    /// Forgets runs of failed sign-ins a day after their last failure (a running lock is kept
    /// until it ends), every `every`, on every node: the attempts table would otherwise keep
    /// every address anyone ever tried. Failures are logged and retried at the next tick.
    pub async fn run_login_attempt_pruning(self, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.prune_login_attempts().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "forgot runs of failed sign-ins older than a day"),
                Err(err) => tracing::warn!(error = %err, "pruning sign-in attempts failed; will retry"),
            }
        }
    }

    /// One pruning pass (see `run_login_attempt_pruning`): how many runs were forgotten.
    pub async fn prune_login_attempts(&self) -> Result<i64, AppError> {
        // The sign-in login's (0044).
        Ok(users::prune_login_attempts(self.sign_in_db()?, self.clock.now(), LOGIN_ATTEMPTS_KEPT).await?)
    }

    /// Records a refused sign-in (and the lock, if this attempt set it). Returns the one answer
    /// every refusal gets, unless the record itself cannot be written.
    pub(crate) async fn record_failed_login(
        &self,
        email: Option<&Email>,
        known_user: Option<UserId>,
        reserved: Option<users::Credentials>,
        meta: &RequestMeta,
    ) -> AppError {
        let reason = match (&known_user, &reserved) {
            (None, _) => "unknown_account",
            (Some(_), None) => "locked",
            (Some(_), Some(_)) => "wrong_password",
        };
        let mut tx = Tx::<Anonymous>::anonymous();
        audit::record(
            &mut tx,
            self.audit("user.login_failed", meta)
                .actor(Actor::None)
                .target_opt(known_user.map(|u| ("user", u.as_uuid())))
                .outcome(Outcome::Failure)
                .details(json!({ "reason": reason })),
        );
        let locked_now = reserved.as_ref().is_some_and(|c| c.locks_now);
        if let Some(locked) = reserved.filter(|c| c.locks_now) {
            audit::record(
                &mut tx,
                self.audit("user.locked", meta).actor(Actor::None).target("user", locked.user_id.as_uuid()).details(
                    json!({
                        "failed_attempts": self.policy.lockout.threshold,
                        "locked_for_seconds": self.policy.lockout.duration.whole_seconds(),
                    }),
                ),
            );
        }
        match tx.run(&self.db).await {
            Ok(_) => {
                if let (true, Some(email)) = (locked_now, email) {
                    self.send_notice(
                        email.as_str(),
                        Notice::Locked { minutes: self.policy.lockout.duration.whole_minutes() },
                    );
                }
                AppError::InvalidCredentials
            }
            Err(err) => err.into(),
        }
    }

    /// Ends the presented session.
    pub async fn log_out(&self, proof: &SessionProof, meta: &RequestMeta) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        users::revoke_current_session(&mut tx, now);
        audit::record(&mut tx, self.audit("user.logout", meta));
        tx.run(&self.db).await?;
        Ok(())
    }

    /// The caller's active sessions, the current one marked.
    pub async fn list_sessions(&self, proof: &SessionProof) -> Result<Vec<SessionInfo>, AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        let list = sessions::list_mine(&mut tx, now);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    /// Revokes one of the caller's sessions (another user's id is "not found").
    pub async fn revoke_session(
        &self,
        proof: &SessionProof,
        id: SessionId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        sessions::revoke_mine(&mut tx, id, now);
        audit::record(&mut tx, self.audit("user.session_revoked", meta).target_opt(Some(("session", id.as_uuid()))));
        tx.run(&self.db).await?;
        Ok(())
    }

    /// "Sign out everywhere else": revokes every other session of the caller; returns how many.
    pub async fn revoke_other_sessions(&self, proof: &SessionProof, meta: &RequestMeta) -> Result<i64, AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        let count = sessions::revoke_others(&mut tx, now);
        audit::record(&mut tx, self.audit("user.sessions_revoked", meta).details(json!({"scope": "all_other"})));
        Ok(tx.run(&self.db).await?.get(count)?)
    }

    pub async fn me(&self, proof: &SessionProof) -> Result<Me, AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let me = users::me(&mut tx);
        Ok(tx.run(&self.db).await?.get(me)?)
    }
}
