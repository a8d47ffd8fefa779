//! Email verification and password reset.

use palisade_auth::{RESET_TOKEN_PREFIX, SessionToken, check_strength, hash_token};
use palisade_core::{Email, Password};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, Actor, RequestMeta};
use palisade_store::repo::email_tokens;
use secrecy::SecretString;
use serde_json::json;

use crate::mail::Notice;
use crate::{App, AppError};

/// A token as pasted from a link: bounded, so junk is refused before hashing.
fn parse_token(raw: &str, prefix: &str) -> Result<palisade_core::SessionTokenHash, AppError> {
    let raw = raw.trim();
    if raw.len() > 128 || !raw.starts_with(prefix) {
        return Err(AppError::InvalidToken);
    }
    Ok(hash_token(raw))
}

impl App {
    /// Marks the address verified (the link from the sign-up email).
    pub async fn verify_email(&self, token: &str, meta: &RequestMeta) -> Result<(), AppError> {
        let proof = parse_token(token, palisade_auth::VERIFY_TOKEN_PREFIX)?;
        let mut tx = Tx::anonymous();
        let verified = email_tokens::verify(&mut tx, &proof, self.clock.now());
        audit::record(&mut tx, self.audit("user.email_verified", meta));
        tx.run(&self.db).await?.get(verified)?;
        Ok(())
    }

    /// Sends a reset link if the address has an account. The answer never says whether it does.
    pub async fn forgot_password(&self, email: &str, meta: &RequestMeta) -> Result<(), AppError> {
        let email = Email::parse(email)?;
        let token = SessionToken::mint_prefixed(&*self.random, RESET_TOKEN_PREFIX);
        let mut tx = Tx::anonymous();
        let account =
            email_tokens::issue_reset(&mut tx, &email, &token.hash, self.clock.now(), self.policy.reset_valid_for);
        // Minting an email token: the sign-in login's (0042).
        let Some(account) = tx.run(self.sign_in_db()?).await?.get(account)? else {
            return Ok(());
        };
        let mut tx = Tx::anonymous();
        let mut event = self.audit("user.password_reset_requested", meta);
        event.actor = Actor::None;
        event.target_kind = Some("user");
        event.target_id = Some(account.id.as_uuid());
        audit::record(&mut tx, event);
        tx.run(&self.db).await?;
        self.send_reset(email.as_str(), &account.name, token.expose());
        Ok(())
    }

    /// Sets a new password with a reset link: single use, then every session of the account is
    /// revoked and the account unlocked.
    pub async fn reset_password(
        &self,
        token: &str,
        password: SecretString,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let proof = parse_token(token, RESET_TOKEN_PREFIX)?;
        let password = Password::parse(password).map_err(|e| AppError::Validation(vec![e]))?;
        check_strength(&password, &[])?;
        let hash = self.hasher.hash(&password).await?;
        let mut tx = Tx::anonymous();
        let account = email_tokens::reset_password(&mut tx, &proof, hash, self.clock.now());
        audit::record(&mut tx, self.audit("user.password_reset", meta).details(json!({"sessions_revoked": true})));
        let (_, email, _) = tx.run(&self.db).await?.get(account)?;
        self.send_notice(&email, Notice::PasswordChanged);
        Ok(())
    }
}

impl App {
    /// Starts moving the account to a new address (needs a recent authentication). The link goes
    /// to the new address; the old one gets a notice. The answer is the same whether or not the
    /// new address already has an account (then it gets a notice instead of a link).
    pub async fn request_email_change(
        &self,
        proof: &palisade_core::SessionProof,
        new_email: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let new_email = Email::parse(new_email)?;
        let me = self.me(proof).await?;
        if me.email == new_email.as_str() {
            return Err(palisade_core::ValidationError::new("email", "is already your address").into());
        }
        let token = SessionToken::mint_prefixed(&*self.random, palisade_auth::CHANGE_EMAIL_TOKEN_PREFIX);
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        palisade_store::repo::security::require_recent_auth(&mut tx, now, crate::STEP_UP_WINDOW);
        let taken = email_tokens::issue_change(&mut tx, &token.hash, &new_email, now, time::Duration::hours(24));
        audit::record(&mut tx, self.audit("user.email_change_requested", meta));
        // Minting an email token: the sign-in login's (0042).
        let taken = tx.run(self.sign_in_db()?).await?.get(taken)?;
        if taken {
            self.send_notice(new_email.as_str(), Notice::AddressTaken);
        } else {
            self.send_email_change(new_email.as_str(), &me.name, token.expose());
        }
        self.send_notice(&me.email, Notice::EmailChangeRequested { to: new_email.as_str() });
        Ok(())
    }

    /// Completes a change of address with the link sent to the new address.
    pub async fn confirm_email_change(&self, token: &str, meta: &RequestMeta) -> Result<(), AppError> {
        let proof = parse_token(token, palisade_auth::CHANGE_EMAIL_TOKEN_PREFIX)?;
        let mut tx = Tx::anonymous();
        let old = email_tokens::change(&mut tx, &proof, self.clock.now());
        audit::record(&mut tx, self.audit("user.email_changed", meta));
        let old = match tx.run(&self.db).await {
            Err(palisade_store::StoreError::Conflict { .. }) => {
                return Err(AppError::Conflict("the new address was taken meanwhile".into()));
            }
            other => other?.get(old)?,
        };
        self.send_notice(&old, Notice::EmailChanged);
        Ok(())
    }
}
