//! WebAuthn (webauthn-rs): named security keys and passkeys, registered by a signed-in user, used
//! as the second step of a sign-in or for a passwordless one, removed with a recent
//! authentication.
//!
//! A ceremony spans two requests that may reach different nodes, so its state is never kept in
//! memory: a registration's state goes back to the client sealed with the instance key (bound to
//! the user, valid 5 minutes); a sign-in's state is stored with its single-use challenge.
//!
//! Stored credentials are sealed under the instance's data key (they belong to their user and
//! outlive any organization), bound to the user and the credential's id. Rows stored in clear
//! before that are still read, and are stored sealed at their next use.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_auth::{SessionToken, hash_token};
use palisade_core::{CredentialId, Email, SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, Actor, RequestMeta};
use palisade_store::repo::users;
use palisade_store::repo::webauthn::{
    self as repo, Challenge, CredentialInfo, NewCredential, PasskeyData, Purpose, StoredPasskey,
};
use palisade_store::{StoreError, Tx};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse,
};

use crate::mail::Notice;
use crate::mfa::{CHALLENGE_PREFIX, FailedFactor};
use crate::security::STEP_UP_WINDOW;
use crate::tokens::LoginOutput;
use crate::{App, AppError};

/// How long a ceremony may take (the browser's own timeout is 5 minutes too).
const CEREMONY: time::Duration = time::Duration::minutes(5);

/// Authentication methods (RFC 8176) of a password + security key sign-in, and of a passwordless
/// one (a key that verified its user: possession plus PIN or biometrics).
pub const AMR_PASSWORD_KEY: &[&str] = &["pwd", "hwk", "mfa"];
pub const AMR_PASSKEY: &[&str] = &["hwk", "mfa"];

/// What a registration ceremony needs back: the browser's options and the sealed state.
pub struct RegistrationStart {
    pub options: Value,
    pub state: String,
}

#[derive(Serialize, Deserialize)]
struct SealedRegistration {
    user: String,
    expires: i64,
    state: PasskeyRegistration,
}

fn registration_context(user: UserId) -> Vec<u8> {
    format!("webauthn-registration|{user}").into_bytes()
}

/// What a stored credential is bound to: its user and its id.
fn passkey_context(user: UserId, credential: Uuid) -> Vec<u8> {
    format!("webauthn|{user}|{}", CredentialId::from_uuid(credential)).into_bytes()
}

fn invalid(field: &str, message: &str) -> AppError {
    AppError::Validation(vec![ValidationError::new(field, message)])
}

fn key_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name", "1 to 100 printable characters, e.g. \"YubiKey 5\" or \"Work laptop\""));
    }
    Ok(name.to_owned())
}

impl App {
    /// Starts registering a security key or passkey for the signed-in user.
    pub async fn start_webauthn_registration(&self, proof: &SessionProof) -> Result<RegistrationStart, AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let me = users::me(&mut tx);
        let existing = repo::my_credential_ids(&mut tx);
        let mut results = tx.run(&self.db).await?;
        let (me, existing) = (results.get(me)?, results.get(existing)?);
        let exclude: Vec<CredentialID> = existing;
        let (options, state) = self
            .webauthn
            .start_passkey_registration(me.id.as_uuid(), &me.email, &me.name, Some(exclude))
            .map_err(|err| AppError::Internal(format!("starting a WebAuthn registration: {err}")))?;
        let sealed = SealedRegistration {
            user: me.id.to_string(),
            expires: (self.clock.now() + CEREMONY).unix_timestamp(),
            state,
        };
        let plain = serde_json::to_vec(&sealed).map_err(|e| AppError::Internal(e.to_string()))?;
        let state = URL_SAFE_NO_PAD.encode(self.keys.seal(&plain, &registration_context(me.id)));
        Ok(RegistrationStart { options: serde_json::to_value(options).unwrap_or(Value::Null), state })
    }

    /// Finishes a registration: checks the authenticator's answer against the sealed state and
    /// stores the credential under `name`.
    pub async fn finish_webauthn_registration(
        &self,
        proof: &SessionProof,
        name: &str,
        state: &str,
        credential: Value,
        meta: &RequestMeta,
    ) -> Result<CredentialInfo, AppError> {
        let name = key_name(name)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential).map_err(|_| {
            invalid("credential", "is not a WebAuthn registration response (navigator.credentials.create)")
        })?;
        // A new key signs in without the password: adding one needs a fresh proof of it
        // (step-up), so a stolen session cookie cannot plant a way back in.
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        palisade_store::repo::security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        let me = users::me(&mut tx);
        let me = tx.run(&self.db).await?.get(me)?;
        let bad_state =
            || invalid("state", "is not the state of a registration of yours that is still open; start again");
        let sealed = URL_SAFE_NO_PAD.decode(state.trim()).map_err(|_| bad_state())?;
        let plain = self.keys.open(&sealed, &registration_context(me.id)).map_err(|_| bad_state())?;
        let sealed: SealedRegistration = serde_json::from_slice(&plain).map_err(|_| bad_state())?;
        if sealed.user != me.id.to_string() || sealed.expires <= self.clock.now().unix_timestamp() {
            return Err(bad_state());
        }
        let passkey = self.webauthn.finish_passkey_registration(&credential, &sealed.state).map_err(|err| {
            tracing::info!(error = %err, "a WebAuthn registration was refused");
            invalid("credential", "was not accepted for this registration (wrong origin, challenge or key)")
        })?;
        let now = self.clock.now();
        let id = CredentialId::new(&*self.clock, &*self.random).as_uuid();
        let passkey_sealed = self.seal_passkey(me.id, id, &passkey).await?;
        let mut tx = Tx::session(proof, now);
        repo::insert(
            &mut tx,
            NewCredential {
                id,
                name: name.clone(),
                credential_id: AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec(),
                passkey_sealed,
                at: now,
            },
        );
        audit::record(
            &mut tx,
            self.audit("user.mfa_enabled", meta)
                .target("webauthn_credential", id)
                .details(json!({"method": "webauthn"})),
        );
        match tx.run(&self.db).await {
            Err(StoreError::Conflict { .. }) => {
                return Err(AppError::Conflict(
                    "this key is already registered, or you already have a key with this name".into(),
                ));
            }
            other => other?,
        };
        self.send_notice(&me.email, Notice::SecurityKeyAdded { name: &name });
        Ok(CredentialInfo { id, name, created_at: now, last_used_at: None })
    }

    pub async fn list_webauthn_credentials(&self, proof: &SessionProof) -> Result<Vec<CredentialInfo>, AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let list = repo::list_mine(&mut tx);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    /// Removes one of the caller's keys (needs a recent authentication, like turning TOTP off).
    pub async fn remove_webauthn_credential(
        &self,
        proof: &SessionProof,
        id: CredentialId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        palisade_store::repo::security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        repo::delete_mine(&mut tx, id.as_uuid());
        audit::record(
            &mut tx,
            self.audit("user.mfa_disabled", meta)
                .target("webauthn_credential", id.as_uuid())
                .details(json!({"method": "webauthn"})),
        );
        let me = users::me(&mut tx);
        let email = tx.run(&self.db).await?.get(me)?.email;
        self.send_notice(&email, Notice::MfaRemoved);
        Ok(())
    }

    /// A credential's webauthn-rs state sealed under the instance's data key, bound to its user
    /// and id.
    async fn seal_passkey(&self, user: UserId, id: Uuid, passkey: &Passkey) -> Result<Vec<u8>, AppError> {
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(passkey).map_err(|e| AppError::Internal(e.to_string()))?);
        self.instance_seal(&plain, &passkey_context(user, id)).await
    }

    /// The stored credentials as webauthn-rs `Passkey`s (sealed ones opened, old clear ones as
    /// they are), each with its row. One that is not a `Passkey` is left out.
    async fn open_passkeys(&self, stored: &[StoredPasskey]) -> Result<Vec<(StoredPasskey, Passkey)>, AppError> {
        let mut opened = Vec::with_capacity(stored.len());
        for row in stored {
            let passkey = match &row.passkey {
                PasskeyData::Sealed(sealed) => {
                    let plain = self.instance_open(sealed, &passkey_context(row.user_id, row.id)).await?;
                    serde_json::from_slice::<Passkey>(&plain).ok()
                }
                PasskeyData::Clear(value) => serde_json::from_value::<Passkey>(value.clone()).ok(),
            };
            if let Some(passkey) = passkey {
                opened.push((row.clone(), passkey));
            }
        }
        Ok(opened)
    }

    /// The options of a sign-in ceremony over `passkeys`, and its single-use challenge token.
    pub(crate) async fn issue_webauthn_challenge(
        &self,
        user: UserId,
        passkeys: &[StoredPasskey],
        purpose: Purpose,
        meta: &RequestMeta,
    ) -> Result<(SecretString, Value), AppError> {
        let passkeys: Vec<Passkey> = self.open_passkeys(passkeys).await?.into_iter().map(|(_, p)| p).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|err| AppError::Internal(format!("starting a WebAuthn sign-in: {err}")))?;
        let token = SessionToken::mint_prefixed(&*self.random, CHALLENGE_PREFIX);
        let mut tx = Tx::anonymous();
        let state = serde_json::to_value(&state).map_err(|e| AppError::Internal(e.to_string()))?;
        repo::create_challenge(&mut tx, &token.hash, user, self.clock.now(), CEREMONY, state, purpose);
        audit::record(
            &mut tx,
            self.audit("user.mfa_challenged", meta)
                .actor(Actor::User(user.as_uuid()))
                .target("user", user.as_uuid())
                .details(json!({"method": "webauthn", "purpose": purpose_name(purpose)})),
        );
        // Minting a challenge: the sign-in login's (0042).
        tx.run(self.sign_in_db()?).await?;
        Ok((token.token, serde_json::to_value(options).unwrap_or(Value::Null)))
    }

    /// `POST /auth/passkey/start`: a passwordless sign-in ceremony for the account with this
    /// address. Every address gets the same kind of answer: one without keys (or no account at
    /// all) gets a decoy whose credential id is stable and meaningless, and its challenge token
    /// simply never works.
    pub async fn start_passwordless(&self, email: &str, meta: &RequestMeta) -> Result<(SecretString, Value), AppError> {
        let email = Email::parse(email).map_err(AppError::from)?;
        let mut tx = Tx::anonymous();
        let passkeys = repo::passkeys_for_email(&mut tx, &email);
        let passkeys = tx.run(&self.db).await?.get(passkeys)?;
        if let Some(first) = passkeys.first() {
            return self.issue_webauthn_challenge(first.user_id, &passkeys, Purpose::Passwordless, meta).await;
        }
        Ok((SessionToken::mint_prefixed(&*self.random, CHALLENGE_PREFIX).token, self.decoy_options(&email)))
    }

    /// Options shaped exactly like a real ceremony's, for an address with no keys.
    fn decoy_options(&self, email: &Email) -> Value {
        let mut challenge = [0u8; 32];
        self.random.fill(&mut challenge);
        let decoy_id = self.keys.mac("webauthn-decoy-credential", email.as_str().as_bytes());
        let mut options = (*self.decoy_template).clone();
        options["publicKey"]["challenge"] = json!(URL_SAFE_NO_PAD.encode(challenge));
        options["publicKey"]["allowCredentials"] =
            json!([{"type": "public-key", "id": URL_SAFE_NO_PAD.encode(decoy_id)}]);
        options
    }

    /// The answer to a WebAuthn sign-in challenge (second factor or passwordless). Every refusal
    /// is one answer and counts towards the account lockout, like a wrong password.
    pub async fn complete_login_webauthn(
        &self,
        challenge: &str,
        credential: Value,
        meta: &RequestMeta,
    ) -> Result<LoginOutput, AppError> {
        let challenge = challenge.trim();
        if !challenge.starts_with(CHALLENGE_PREFIX) || challenge.len() > 128 {
            return Err(AppError::InvalidCredentials);
        }
        let credential: PublicKeyCredential = serde_json::from_value(credential)
            .map_err(|_| invalid("credential", "is not a WebAuthn assertion (navigator.credentials.get)"))?;
        let (state, used) = match self.check_assertion(challenge, &credential).await? {
            // Unknown, used, expired or decoy challenges: the same answer as a wrong key.
            Checked::NoChallenge => return Err(AppError::InvalidCredentials),
            Checked::Refused(state) => return Err(self.webauthn_failed(&state, meta).await),
            Checked::Verified(state, used) => (state, used),
        };
        let (amr, method) = match state.purpose {
            Purpose::SecondFactor => (AMR_PASSWORD_KEY, json!({"method": "password", "second_factor": "webauthn"})),
            Purpose::Passwordless => (AMR_PASSKEY, json!({"method": "passkey"})),
            // A step-up ceremony proves a signed-in user again; it never opens a session.
            Purpose::StepUp => return Err(self.webauthn_failed(&state, meta).await),
        };
        let mut tx = Tx::anonymous();
        repo::complete(&mut tx, &used.challenge, self.clock.now(), used.credential_id, used.passkey);
        let opened = self.open_session(&mut tx, state.user_id, amr, method, meta);
        match tx.run(self.sign_in_db()?).await {
            Ok(_) => {}
            Err(StoreError::InvalidToken | StoreError::Unauthenticated) => {
                return Err(self.webauthn_failed(&state, meta).await);
            }
            Err(other) => return Err(other.into()),
        }
        self.login_output(opened).await
    }

    async fn webauthn_failed(&self, state: &Challenge, meta: &RequestMeta) -> AppError {
        let attempt = FailedFactor {
            user: state.user_id,
            email: &state.email,
            reserved: state.reserved,
            locks_now: state.locks_now,
        };
        self.factor_failed(attempt, "wrong_security_key", meta).await
    }
}

fn purpose_name(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::SecondFactor => "second_factor",
        Purpose::Passwordless => "passwordless",
        Purpose::StepUp => "step_up",
    }
}

/// A security key's verified answer, to be completed (challenge used, counter stored) in the
/// transaction that signs in or marks the session as recently authenticated.
pub(crate) struct VerifiedKey {
    pub challenge: palisade_core::SessionTokenHash,
    pub credential_id: Vec<u8>,
    /// The credential's new state, sealed for `passkey_sealed`.
    pub passkey: Vec<u8>,
}

impl App {
    /// `POST /auth/step-up/webauthn`: a ceremony over the caller's own keys.
    pub async fn start_step_up_webauthn(
        &self,
        proof: &SessionProof,
        meta: &RequestMeta,
    ) -> Result<(SecretString, Value), AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let me = users::me(&mut tx);
        let keys = repo::my_passkeys(&mut tx);
        let mut results = tx.run(&self.db).await?;
        let (me, keys) = (results.get(me)?, results.get(keys)?);
        if keys.is_empty() {
            return Err(invalid("webauthn", "no security key is registered to this account"));
        }
        self.issue_webauthn_challenge(me.id, &keys, Purpose::StepUp, meta).await
    }

    /// Checks a step-up answer for `user`: counted against the lockout like any attempt; `None`
    /// when it is wrong (the caller records the failure).
    pub(crate) async fn verify_step_up_assertion(
        &self,
        user: UserId,
        challenge: &str,
        credential: Value,
    ) -> Result<Option<VerifiedKey>, AppError> {
        let challenge = challenge.trim();
        if !challenge.starts_with(CHALLENGE_PREFIX) || challenge.len() > 128 {
            return Ok(None);
        }
        let credential: PublicKeyCredential = serde_json::from_value(credential)
            .map_err(|_| invalid("webauthn", "credential is not a WebAuthn assertion (navigator.credentials.get)"))?;
        match self.check_assertion(challenge, &credential).await? {
            Checked::Verified(state, used) if state.user_id == user && state.purpose == Purpose::StepUp => {
                Ok(Some(used))
            }
            _ => Ok(None),
        }
    }

    /// Counts a try of the challenge `token` (against the lockout) and checks the key's answer
    /// to its ceremony. A verified answer comes with the stored credential it used, its counter
    /// moved on, ready for `repo::complete` in the caller's transaction.
    async fn check_assertion(&self, token: &str, credential: &PublicKeyCredential) -> Result<Checked, AppError> {
        let proof = hash_token(token);
        let mut tx = Tx::anonymous();
        let entered = repo::enter_challenge(&mut tx, &proof, self.clock.now(), self.policy.lockout);
        // Entering a challenge: the sign-in login's (0042).
        let state = match tx.run(self.sign_in_db()?).await {
            Ok(mut results) => results.get(entered)?,
            Err(StoreError::InvalidToken) => return Ok(Checked::NoChallenge),
            Err(other) => return Err(other.into()),
        };
        let ceremony = serde_json::from_value::<PasskeyAuthentication>(state.state.clone()).ok();
        let result = match (state.reserved, ceremony) {
            (true, Some(ceremony)) => self.webauthn.finish_passkey_authentication(credential, &ceremony).ok(),
            _ => None,
        };
        let Some(result) = result else { return Ok(Checked::Refused(state)) };
        let mut tx = Tx::anonymous();
        let passkeys = repo::passkeys_for_email(&mut tx, &Email::parse(&state.email)?);
        let passkeys = tx.run(&self.db).await?.get(passkeys)?;
        let Some((row, mut used)) =
            self.open_passkeys(&passkeys).await?.into_iter().find(|(_, p)| p.cred_id() == result.cred_id())
        else {
            return Ok(Checked::Refused(state));
        };
        used.update_credential(&result);
        let verified = VerifiedKey {
            challenge: proof,
            credential_id: AsRef::<[u8]>::as_ref(used.cred_id()).to_vec(),
            passkey: self.seal_passkey(row.user_id, row.id, &used).await?,
        };
        Ok(Checked::Verified(state, verified))
    }
}

/// How a key's answer to a sign-in challenge fared.
enum Checked {
    /// No live challenge by that token (unknown, used, expired, or a decoy).
    NoChallenge,
    /// The try was counted; the answer is wrong, or the account is locked.
    Refused(Challenge),
    Verified(Challenge, VerifiedKey),
}

/// The shape of a sign-in ceremony's options with no credentials in it: real ceremonies and
/// decoys are built from the same template so they cannot be told apart by their keys.
pub fn decoy_template(rp_id: &str) -> Value {
    // A ceremony over no credentials is refused by webauthn-rs, so build the options the way it
    // does (it serialises RequestChallengeResponse) from a request with a placeholder credential.
    let placeholder = RequestChallengeResponse {
        public_key: webauthn_rs_proto::PublicKeyCredentialRequestOptions {
            challenge: vec![0u8; 32],
            timeout: Some(300_000),
            rp_id: rp_id.to_owned(),
            allow_credentials: vec![],
            user_verification: webauthn_rs_proto::UserVerificationPolicy::Required,
            hints: None,
            extensions: None,
        },
        mediation: None,
    };
    serde_json::to_value(placeholder).unwrap_or(Value::Null)
}
