//! Step-up authentication (password, plus a code or a security key's answer when the account
//! has them) and the account changes that need it: disabling the second factor, changing the
//! password. Exports use it too; API keys and org deletion join as they are built.

use palisade_auth::check_strength;
use palisade_core::{Password, SessionProof, ValidationError};
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::{mfa, security, users};
use palisade_store::{Anonymous, StoreError, Tx};
use secrecy::SecretString;
use serde_json::json;

use crate::mail::Notice;
use crate::mfa::{Code, parse_code};
use crate::{App, AppError};

/// How recent an authentication sensitive actions need.
pub const STEP_UP_WINDOW: time::Duration = time::Duration::minutes(10);

impl App {
    /// Re-proves the session's user (password, and the second factor if enabled); sensitive
    /// actions are then allowed for 10 minutes. Failures count towards the account lockout.
    pub async fn step_up(
        &self,
        proof: &SessionProof,
        password: SecretString,
        code: Option<String>,
        key: Option<(String, serde_json::Value)>,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let me = users::me(&mut tx);
        let factor = mfa::factor(&mut tx);
        let keys = palisade_store::repo::webauthn::my_credential_ids(&mut tx);
        let mut results = tx.run(&self.db).await?;
        let (me, factor) = (results.get(me)?, results.get(factor)?.filter(|f| f.confirmed));
        let has_keys = !results.get(keys)?.is_empty();
        // A security key's answer stands in for a code; without either, say what is missing.
        if let (Some((challenge, credential)), true) = (key, has_keys) {
            return self.step_up_with_key(proof, &me, password, &challenge, credential, meta).await;
        }
        let code = match (&factor, code) {
            (Some(_), None) => {
                return Err(
                    ValidationError::new("code", "your account has two-factor authentication: add the code").into()
                );
            }
            (None, _) if has_keys => {
                return Err(ValidationError::new(
                    "webauthn",
                    "your account signs in with a security key: answer POST /api/v1/auth/step-up/webauthn and send it as webauthn",
                )
                .into());
            }
            (Some(_), Some(code)) => Some(parse_code(&code)?),
            (None, _) => None,
        };
        let email = palisade_core::Email::parse(&me.email)?;
        let mut tx = Tx::<Anonymous>::anonymous();
        let reservation = users::reserve_login(&mut tx, &email, self.clock.now(), self.policy.lockout);
        // Reading a password hash: the sign-in login's (0042).
        let (reserved, _) = tx.run(self.sign_in_db()?).await?.get(reservation)?;
        let password_ok =
            self.hasher.verify(&password, reserved.as_ref().map(|c| c.password_hash.as_str())).await?.matches;
        let second_ok = match (&code, &factor, password_ok) {
            (None, _, ok) => ok.then_some(None),
            (Some(Code::Totp(code)), Some(factor), true) => {
                self.check_totp(&factor.sealed, me.id, &me.email, code).await?.map(|step| Some((Some(step), None)))
            }
            (Some(Code::Backup { lookup, whole }), Some(_), true) => {
                let mut tx = Tx::session(proof, self.clock.now());
                let hash = security::own_backup_code(&mut tx, lookup);
                let hash = tx.run(&self.db).await?.get(hash)?;
                let ok = self.hasher.verify(&SecretString::from(whole.clone()), hash.as_deref()).await?.matches;
                ok.then(|| Some((None, Some(lookup.clone()))))
            }
            _ => None,
        };
        let Some(second) = second_ok else {
            return Err(self.record_failed_login(Some(&email), Some(me.id), reserved, meta).await);
        };
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        match second {
            Some((Some(step), _)) => security::use_totp_step(&mut tx, step),
            Some((None, Some(lookup))) => security::use_backup_code(&mut tx, &lookup, now),
            _ => {}
        }
        users::clear_failures(&mut tx, me.id);
        security::mark_authenticated(&mut tx, now);
        audit::record(&mut tx, self.audit("user.step_up", meta));
        match tx.run(&self.db).await {
            Err(StoreError::NotFound) => Err(AppError::InvalidCredentials),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Step-up with the password and a security key's answer to a step-up ceremony.
    async fn step_up_with_key(
        &self,
        proof: &SessionProof,
        me: &users::Me,
        password: SecretString,
        challenge: &str,
        credential: serde_json::Value,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let email = palisade_core::Email::parse(&me.email)?;
        let mut tx = Tx::<Anonymous>::anonymous();
        let reservation = users::reserve_login(&mut tx, &email, self.clock.now(), self.policy.lockout);
        // Reading a password hash: the sign-in login's (0042).
        let (reserved, _) = tx.run(self.sign_in_db()?).await?.get(reservation)?;
        let password_ok =
            self.hasher.verify(&password, reserved.as_ref().map(|c| c.password_hash.as_str())).await?.matches;
        let assertion = match password_ok {
            true => self.verify_step_up_assertion(me.id, challenge, credential).await?,
            false => None,
        };
        let Some(assertion) = assertion else {
            return Err(self.record_failed_login(Some(&email), Some(me.id), reserved, meta).await);
        };
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        palisade_store::repo::webauthn::complete(
            &mut tx,
            &assertion.challenge,
            now,
            assertion.credential_id,
            assertion.passkey,
        );
        users::clear_failures(&mut tx, me.id);
        security::mark_authenticated(&mut tx, now);
        audit::record(&mut tx, self.audit("user.step_up", meta).details(json!({"second_factor": "webauthn"})));
        // Completing a challenge: the sign-in login's (0042).
        match tx.run(self.sign_in_db()?).await {
            Err(StoreError::InvalidToken | StoreError::Unauthenticated) => Err(AppError::InvalidCredentials),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Turns the second factor off (needs a recent authentication).
    pub async fn disable_totp(&self, proof: &SessionProof, meta: &RequestMeta) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        security::disable_totp(&mut tx);
        audit::record(&mut tx, self.audit("user.mfa_disabled", meta).details(json!({"method": "totp"})));
        let me = users::me(&mut tx);
        let email = tx.run(&self.db).await?.get(me)?.email;
        self.send_notice(&email, Notice::MfaRemoved);
        Ok(())
    }

    /// Sets a new password (needs a recent authentication); every other session is signed out.
    pub async fn change_password(
        &self,
        proof: &SessionProof,
        password: SecretString,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let password = Password::parse(password)?;
        let me = self.me(proof).await?;
        check_strength(&password, &[me.email.as_str(), me.name.as_str()])?;
        let hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        security::set_own_password(&mut tx, hash, now);
        audit::record(
            &mut tx,
            self.audit("user.password_changed", meta).details(json!({"other_sessions_revoked": true})),
        );
        tx.run(&self.db).await?;
        self.send_notice(&me.email, Notice::PasswordChanged);
        Ok(())
    }
}
