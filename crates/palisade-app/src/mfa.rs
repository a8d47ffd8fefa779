//! TOTP second factor (RFC 6238): enrolment, confirmation with backup codes, and the second step
//! of a sign-in. Seeds are sealed under the instance's data key (they belong to their user and
//! outlive any organization), bound to that user.

use palisade_auth::{SessionToken, hash_token};
use palisade_core::{SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, Actor, Outcome, RequestMeta};
use palisade_store::repo::{mfa, users as user_repo};
use palisade_store::{StoreError, Tx};
use rand::Rng;
use secrecy::SecretString;
use serde_json::json;
use totp_rs::{Algorithm, Builder, Totp};

use crate::mail::Notice;
use crate::tokens::AMR_PASSWORD_OTP;
use crate::{App, AppError, LoginOutput};

/// Prefix of the short-lived token between the password and the second factor.
pub const CHALLENGE_PREFIX: &str = "pmc_";
/// Backup codes per enrolment.
pub const BACKUP_CODES: usize = 10;
const BASE32: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// What the authenticator app needs, shown once.
pub struct TotpEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

fn context(user: UserId) -> Vec<u8> {
    format!("totp|{user}").into_bytes()
}

fn totp(seed: Vec<u8>, account: &str) -> Result<Totp, AppError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed)
        .with_account_name(account.to_owned())
        .with_issuer(Some("Palisade"))
        .build()
        .map_err(|e| AppError::Internal(format!("totp: {e:?}")))
}

/// A backup code `abcd-efgh-jkmn`: the first group names its row.
fn new_backup_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let group = |rng: &mut rand::rngs::OsRng| {
        (0..4).map(|_| BASE32[rng.gen_range(0..BASE32.len())] as char).collect::<String>()
    };
    format!("{}-{}-{}", group(&mut rng), group(&mut rng), group(&mut rng))
}

/// Splits what the user typed into a six-digit TOTP code or a backup code.
pub(crate) enum Code {
    Totp(String),
    Backup { lookup: String, whole: String },
}

pub(crate) fn parse_code(raw: &str) -> Result<Code, AppError> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Code::Totp(compact));
    }
    let groups: Vec<&str> = compact.split('-').collect();
    if groups.len() == 3 && groups.iter().all(|g| g.len() == 4 && g.bytes().all(|b| BASE32.contains(&b))) {
        return Ok(Code::Backup { lookup: groups[0].to_owned(), whole: compact.clone() });
    }
    Err(ValidationError::new("code", "must be the 6-digit code from your app or a backup code (xxxx-xxxx-xxxx)").into())
}

impl App {
    fn unix_now(&self) -> u64 {
        self.clock.now().unix_timestamp().max(0) as u64
    }

    /// The step a TOTP code matches now (±1 step), if any.
    pub(crate) async fn check_totp(
        &self,
        sealed: &[u8],
        user: UserId,
        account: &str,
        code: &str,
    ) -> Result<Option<i64>, AppError> {
        let seed = self.instance_open(sealed, &context(user)).await?;
        Ok(totp(seed.to_vec(), account)?.check(code, self.unix_now()).map(|s| s as i64))
    }

    /// Starts (or restarts) TOTP enrolment. A confirmed factor must be removed first.
    pub async fn start_totp(&self, proof: &SessionProof) -> Result<TotpEnrollment, AppError> {
        let me = self.me(proof).await?;
        let mut seed = vec![0u8; 20];
        self.random.fill(&mut seed);
        let sealed = self.instance_seal(&seed, &context(me.id)).await?;
        let generator = totp(seed, &me.email)?;
        let mut tx = Tx::session(proof, self.clock.now());
        mfa::start_totp(&mut tx, sealed, self.clock.now());
        match tx.run(&self.db).await {
            Err(StoreError::NotFound) => return Err(AppError::Conflict("totp already enabled".into())),
            other => other?,
        };
        let otpauth_uri = generator.to_url().map_err(|e| AppError::Internal(format!("otpauth: {e:?}")))?;
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map_err(|e| AppError::Internal(format!("qr: {e}")))?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        Ok(TotpEnrollment { secret: generator.secret().to_base32(), otpauth_uri, qr_svg })
    }

    /// Confirms enrolment with a current code; returns ten single-use backup codes, shown once.
    pub async fn confirm_totp(
        &self,
        proof: &SessionProof,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        let Code::Totp(code) = parse_code(code)? else {
            return Err(ValidationError::new("code", "confirm with the 6-digit code from your app").into());
        };
        // Turning on a second factor changes how the account signs in: it needs a fresh proof of
        // the password (step-up), so a stolen session cookie cannot lock the owner out.
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        palisade_store::repo::security::require_recent_auth(&mut tx, now, crate::security::STEP_UP_WINDOW);
        let me = user_repo::me(&mut tx);
        let factor = mfa::factor(&mut tx);
        let mut results = tx.run(&self.db).await?;
        let (me, factor) = (results.get(me)?, results.get(factor)?);
        let factor = match factor {
            Some(f) if !f.confirmed => f,
            Some(_) => return Err(AppError::Conflict("totp already enabled".into())),
            None => return Err(ValidationError::new("code", "start enrolment first (POST /api/v1/me/mfa/totp)").into()),
        };
        let seed = self.instance_open(&factor.sealed, &context(me.id)).await?;
        let Some(step) = totp(seed.to_vec(), &me.email)?.check(&code, self.unix_now()) else {
            return Err(
                ValidationError::new("code", "is not the current code from your app; check the phone's clock").into()
            );
        };
        let codes: Vec<String> = (0..BACKUP_CODES).map(|_| new_backup_code()).collect();
        let mut stored = Vec::with_capacity(codes.len());
        for code in &codes {
            let hash = self.hasher.rehash(&SecretString::from(code.clone())).await?;
            stored.push((code[..4].to_owned(), hash));
        }
        let mut tx = Tx::session(proof, self.clock.now());
        mfa::confirm_totp(&mut tx, step as i64, stored, self.clock.now());
        audit::record(&mut tx, self.audit("user.mfa_enabled", meta).details(json!({"method": "totp"})));
        match tx.run(&self.db).await {
            Err(StoreError::NotFound) => return Err(ValidationError::new("code", "this code was already used").into()),
            other => other?,
        };
        self.send_notice(&me.email, Notice::MfaAdded);
        Ok(codes)
    }

    /// After a correct password for an account with a second factor: a single-use challenge,
    /// valid 5 minutes. It is no access token: it opens nothing but `POST /auth/mfa`.
    pub(crate) async fn issue_challenge(&self, user: UserId, meta: &RequestMeta) -> Result<SecretString, AppError> {
        let token = SessionToken::mint_prefixed(&*self.random, CHALLENGE_PREFIX);
        let mut tx = Tx::anonymous();
        mfa::create_challenge(&mut tx, &token.hash, user, self.clock.now(), time::Duration::minutes(5));
        audit::record(
            &mut tx,
            self.audit("user.mfa_challenged", meta).actor(Actor::User(user.as_uuid())).target("user", user.as_uuid()),
        );
        // Minting a challenge: the sign-in login's (0042).
        tx.run(self.sign_in_db()?).await?;
        Ok(token.token)
    }

    /// The second step of a sign-in: a TOTP code (each accepted once) or a backup code (each
    /// usable once). Failures count towards the account lockout like wrong passwords.
    pub async fn complete_login_mfa(
        &self,
        challenge: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<LoginOutput, AppError> {
        let challenge = challenge.trim();
        if !challenge.starts_with(CHALLENGE_PREFIX) || challenge.len() > 128 {
            return Err(AppError::InvalidToken);
        }
        let proof = hash_token(challenge);
        let code = parse_code(code)?;
        let lookup = match &code {
            Code::Backup { lookup, .. } => Some(lookup.clone()),
            Code::Totp(_) => None,
        };
        let mut tx = Tx::anonymous();
        let (state, backup_hash) =
            mfa::enter_challenge(&mut tx, &proof, self.clock.now(), self.policy.lockout, lookup.clone());
        // Entering a challenge: the sign-in login's (0042).
        let mut results = tx.run(self.sign_in_db()?).await?;
        let state = results.get(state)?.ok_or(AppError::InvalidToken)?;
        let backup_hash = results.get(backup_hash)?;
        let step = match (&code, state.reserved) {
            (_, false) => None,
            (Code::Totp(code), true) => {
                let seed = self.instance_open(&state.sealed, &context(state.user_id)).await?;
                totp(seed.to_vec(), &state.email)?.check(code, self.unix_now()).map(|s| s as i64)
            }
            (Code::Backup { whole, .. }, true) => {
                let secret = SecretString::from(whole.clone());
                let matches = self.hasher.verify(&secret, backup_hash.as_deref()).await?.matches;
                matches.then_some(-1)
            }
        };
        let Some(step) = step else {
            return Err(self.second_factor_failed(&state, meta).await);
        };
        let now = self.clock.now();
        let method = if step >= 0 { "totp" } else { "backup_code" };
        let mut tx = Tx::anonymous();
        mfa::complete(&mut tx, &proof, now, (step >= 0).then_some(step), lookup.filter(|_| step < 0));
        let opened = self.open_session(
            &mut tx,
            state.user_id,
            AMR_PASSWORD_OTP,
            json!({"method": "password", "second_factor": method}),
            meta,
        );
        match tx.run(self.sign_in_db()?).await {
            Ok(_) => {}
            Err(StoreError::Replayed) => return Err(self.second_factor_failed(&state, meta).await),
            Err(other) => return Err(other.into()),
        }
        if method == "backup_code" {
            self.send_notice(&state.email, Notice::BackupCodeUsed);
        }
        self.login_output(opened).await
    }

    async fn second_factor_failed(&self, state: &mfa::Challenge, meta: &RequestMeta) -> AppError {
        let attempt = FailedFactor {
            user: state.user_id,
            email: &state.email,
            reserved: state.reserved,
            locks_now: state.locks_now,
        };
        self.factor_failed(attempt, "wrong_second_factor", meta).await
    }

    /// Records a refused second factor (a code or a security key): the failed sign-in, and the
    /// lock if this attempt set it (with its notice). Returns the one answer every refusal gets.
    pub(crate) async fn factor_failed(&self, attempt: FailedFactor<'_>, reason: &str, meta: &RequestMeta) -> AppError {
        let mut tx = Tx::anonymous();
        let mut failed = self
            .audit("user.login_failed", meta)
            .actor(Actor::None)
            .target("user", attempt.user.as_uuid())
            .details(json!({"reason": if attempt.reserved { reason } else { "locked" }}));
        failed.outcome = Outcome::Failure;
        audit::record(&mut tx, failed);
        if attempt.locks_now {
            audit::record(
                &mut tx,
                self.audit("user.locked", meta)
                    .actor(Actor::None)
                    .target("user", attempt.user.as_uuid())
                    .details(json!({"failed_attempts": self.policy.lockout.threshold})),
            );
        }
        if let Err(err) = tx.run(&self.db).await {
            return err.into();
        }
        if attempt.locks_now {
            self.send_notice(attempt.email, Notice::Locked { minutes: self.policy.lockout.duration.whole_minutes() });
        }
        AppError::InvalidCredentials
    }
}

/// A refused second-factor attempt, as the challenge recorded it.
pub(crate) struct FailedFactor<'a> {
    pub user: UserId,
    pub email: &'a str,
    /// False when the account was already locked.
    pub reserved: bool,
    /// This attempt is the one that locks the account.
    pub locks_now: bool,
}
