//! The transactional messages and their delivery. Delivery runs in the background so that
//! whether a message is sent (an account exists or not) never shows in response times; a
//! failure is logged without the body (which carries single-use links).

use palisade_mail::Mail;

use crate::App;

/// What happened, in the words of a security notice.
pub enum Notice<'a> {
    SignupAttempt,
    NewSignIn { device: &'a str, ip: &'a str },
    PasswordChanged,
    Locked { minutes: i64 },
    MfaAdded,
    MfaRemoved,
    AddressTaken,
    EmailChangeRequested { to: &'a str },
    EmailChanged,
    BackupCodeUsed,
    RefreshTokenReused,
    SecurityKeyAdded { name: &'a str },
}

impl App {
    pub(crate) fn send_in_background(&self, mail: Mail) {
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            if let Err(err) = mailer.send(mail).await {
                tracing::error!(error = %err, "sending a transactional email failed");
            }
        });
    }

    fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.policy.public_url.trim_end_matches('/'))
    }

    pub(crate) fn send_verification(&self, to: &str, name: &str, token: &str) {
        let hours = self.policy.verification_valid_for.whole_hours();
        self.send_in_background(Mail {
            to: to.to_owned(),
            subject: "Confirm your email address".into(),
            body: format!(
                "Hello {name},\n\nConfirm this address for your Palisade account by opening this link (valid {hours} hours, once):\n\n{}\n\nIf you did not sign up, ignore this message.\n",
                self.link("/verify-email", token)
            ),
        });
    }

    pub(crate) fn send_email_change(&self, to: &str, name: &str, token: &str) {
        self.send_in_background(Mail {
            to: to.to_owned(),
            subject: "Confirm your new email address".into(),
            body: format!(
                "Hello {name},\n\nTo move your Palisade account to this address, open this link (valid 24 hours, once):\n\n{}\n\nIf you did not ask for this, ignore this message.\n",
                self.link("/confirm-email-change", token)
            ),
        });
    }

    pub(crate) fn send_invitation(&self, to: &str, role: &str, token: &str) {
        self.send_in_background(Mail {
            to: to.to_owned(),
            subject: "You are invited to an organization on Palisade".into(),
            body: format!(
                "You were invited to join an organization on Palisade as {role}. Sign in (or sign up) with this address, then open this link (valid 7 days, once):\n\n{}\n\nIf you did not expect this, ignore this message.\n",
                self.link("/accept-invite", token)
            ),
        });
    }

    pub(crate) fn send_reset(&self, to: &str, name: &str, token: &str) {
        let minutes = self.policy.reset_valid_for.whole_minutes();
        self.send_in_background(Mail {
            to: to.to_owned(),
            subject: "Reset your password".into(),
            body: format!(
                "Hello {name},\n\nSomeone asked to reset the password of your Palisade account. To choose a new one, open this link (valid {minutes} minutes, once):\n\n{}\n\nSetting a new password signs you out everywhere. If this was not you, ignore this message; your password stays as it is.\n",
                self.link("/reset-password", token)
            ),
        });
    }

    pub(crate) fn send_notice(&self, to: &str, notice: Notice<'_>) {
        let (subject, body) = match notice {
            Notice::SignupAttempt => (
                "Someone tried to sign up with your address".to_owned(),
                "Someone tried to create a Palisade account with this email address, which already has one. If it was you, sign in, or reset your password if you forgot it. If not, you need do nothing.".to_owned(),
            ),
            Notice::NewSignIn { device, ip } => (
                "New sign-in to your account".to_owned(),
                format!("Your Palisade account was signed in to from a device it had not seen: {device}, from {ip}. If this was not you, reset your password now: that signs out every session."),
            ),
            Notice::PasswordChanged => (
                "Your password was changed".to_owned(),
                "The password of your Palisade account was changed and every session was signed out. If this was not you, reset your password now and contact your administrator.".to_owned(),
            ),
            Notice::Locked { minutes } => (
                "Your account was locked".to_owned(),
                format!("Too many failed sign-ins: your Palisade account is locked for {minutes} minutes. It unlocks by itself; resetting your password unlocks it at once. If these attempts were not yours, someone may be guessing your password."),
            ),
            Notice::MfaAdded => (
                "Two-factor authentication was turned on".to_owned(),
                "An authenticator app was added to your Palisade account; sign-ins now ask for its code. If this was not you, reset your password now and contact your administrator.".to_owned(),
            ),
            Notice::MfaRemoved => (
                "Two-factor authentication was turned off".to_owned(),
                "The authenticator app was removed from your Palisade account; sign-ins no longer ask for a code. If this was not you, reset your password now and contact your administrator.".to_owned(),
            ),
            Notice::AddressTaken => (
                "This address already has an account".to_owned(),
                "Someone asked to move a Palisade account to this address, which already has an account of its own. Nothing was changed. If you meant to, sign in to that account instead.".to_owned(),
            ),
            Notice::EmailChangeRequested { to } => (
                "A change of your email address was requested".to_owned(),
                format!("Someone signed in to your Palisade account asked to change its address to {to}. It changes only when the link sent there is opened. If this was not you, reset your password now."),
            ),
            Notice::EmailChanged => (
                "Your email address was changed".to_owned(),
                "Your Palisade account no longer uses this address. If this was not you, contact your administrator at once.".to_owned(),
            ),
            Notice::BackupCodeUsed => (
                "A backup code was used to sign in".to_owned(),
                "One of your backup codes was just used to sign in to your Palisade account; it cannot be used again. If this was not you, reset your password now.".to_owned(),
            ),
            Notice::SecurityKeyAdded { name } => (
                "A security key was added to your account".to_owned(),
                format!("The security key or passkey \"{name}\" was added to your Palisade account; it can now be used to sign in. If this was not you, reset your password now and contact your administrator."),
            ),
            Notice::RefreshTokenReused => (
                "A sign-in of yours was ended: its refresh token was used twice".to_owned(),
                "A refresh token of one of your Palisade sign-ins was presented after it had already been used, which means a copy of it exists somewhere it should not. That sign-in has been ended on every device that used it. Sign in again; if you did not expect this, change your password and review your sessions.".to_owned(),
            ),
        };
        self.send_in_background(Mail { to: to.to_owned(), subject, body: format!("{body}\n") });
    }
}
