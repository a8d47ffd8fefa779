//! Transactional email: SMTP over TLS (lettre), or, with no SMTP configured, `.eml` files in a
//! private outbox directory that `palisade outbox` reads. Bodies are never logged: they carry
//! single-use links.

mod outbox;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

pub use outbox::{Outbox, OutboxEntry};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail configuration: {0}")]
    Config(String),
    #[error("invalid address: {0}")]
    Address(String),
    #[error("delivery failed: {0}")]
    Delivery(String),
}

/// One message to send: plain text, to one recipient.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(Outbox),
}

/// Sends transactional mail. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: std::sync::Arc<Transport>,
    from: Mailbox,
}

impl Mailer {
    /// Mail to `<dir>` (created mode 0700) instead of an SMTP server.
    pub fn outbox(dir: PathBuf, from: &str) -> Result<Self, MailError> {
        let from = from.parse().map_err(|_| MailError::Config(format!("mail_from {from:?} is not an address")))?;
        Ok(Self { transport: std::sync::Arc::new(Transport::Outbox(Outbox::open(dir)?)), from })
    }

    /// Mail through SMTP: `smtps://user:pass@host:465`, or `smtp://host:587?tls=required`
    /// (STARTTLS). Plain `smtp://` without TLS is accepted only for a relay on loopback.
    pub fn smtp(url: &SecretString, from: &str) -> Result<Self, MailError> {
        let text = url.expose_secret();
        let parsed = url::Url::parse(text).map_err(|_| MailError::Config("smtp_url is not a URL".into()))?;
        let tls = parsed.scheme() == "smtps" || parsed.query_pairs().any(|(k, v)| k == "tls" && v == "required");
        let host = parsed.host_str().unwrap_or_default();
        if !tls && !palisade_core::net::is_this_machine(host) {
            return Err(MailError::Config(format!(
                "SMTP to {host} without TLS: use smtps://… or add ?tls=required (plain SMTP is allowed only to loopback)"
            )));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(text)
            .map_err(|e| MailError::Config(format!("smtp_url: {e}")))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from.parse().map_err(|_| MailError::Config(format!("mail_from {from:?} is not an address")))?;
        Ok(Self { transport: std::sync::Arc::new(Transport::Smtp(transport)), from })
    }

    /// Where mail goes, for the start-up log.
    pub fn describe(&self) -> String {
        match &*self.transport {
            Transport::Smtp(_) => "smtp".into(),
            Transport::Outbox(outbox) => format!("outbox {}", outbox.dir().display()),
        }
    }

    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Address("recipient".into()))?;
        // lettre picks the transfer encoding (quoted-printable for long link lines);
        // `Outbox::read` decodes it again.
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| MailError::Delivery(e.to_string()))?;
        match &*self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await.map(|_| ()).map_err(|e| MailError::Delivery(e.to_string()))
            }
            Transport::Outbox(outbox) => outbox.write(&message.formatted()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_messages_keep_long_links_intact() {
        let temp = tempfile::tempdir().unwrap();
        let mailer = Mailer::outbox(temp.path().join("outbox"), "Palisade <no-reply@localhost>").unwrap();
        let link = format!("http://127.0.0.1:8080/verify-email?token=pev_{}", "A".repeat(43));
        mailer
            .send(Mail { to: "a@example.com".into(), subject: "Hi".into(), body: format!("Hello Zoë,\n\n{link}\n") })
            .await
            .unwrap();
        let outbox = Outbox::open(temp.path().join("outbox")).unwrap();
        let entry = &outbox.list().unwrap()[0];
        let text = outbox.read(entry).unwrap();
        assert!(text.contains(&link), "{text}");
        assert!(text.contains("Zoë"));
    }

    #[test]
    fn plain_smtp_is_refused_except_on_loopback() {
        let err = Mailer::smtp(&"smtp://mail.example.com:25".to_owned().into(), "a@b.co").err().unwrap();
        assert!(err.to_string().contains("without TLS"), "{err}");
        assert!(Mailer::smtp(&"smtp://127.0.0.1:2525".to_owned().into(), "a@b.co").is_ok());
        assert!(Mailer::smtp(&"smtp://mail.example.com:587?tls=required".to_owned().into(), "a@b.co").is_ok());
        assert!(Mailer::smtp(&"smtps://u:p@mail.example.com".to_owned().into(), "a@b.co").is_ok());
    }
}
