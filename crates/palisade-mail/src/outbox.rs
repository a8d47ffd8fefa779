//! The local outbox: one `.eml` file per message in a directory only the server's user can read,
//! kept 7 days.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::MailError;

/// How long messages stay in the outbox.
pub const KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

/// One stored message, for listing.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub path: PathBuf,
    pub written: SystemTime,
    pub to: String,
    pub subject: String,
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
        .unwrap_or("")
}

impl Outbox {
    pub fn open(dir: PathBuf) -> Result<Self, MailError> {
        let io = |e: std::io::Error| MailError::Config(format!("outbox {}: {e}", dir.display()));
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn write(&self, message: &[u8]) -> Result<(), MailError> {
        let name =
            format!("{}-{:016x}.eml", time::OffsetDateTime::now_utc().unix_timestamp_nanos(), rand::random::<u64>());
        let path = self.dir.join(name);
        let bytes = message.to_vec();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            std::io::Write::write_all(&mut file, &bytes)
        })
        .await
        .map_err(|e| MailError::Delivery(e.to_string()))?
        .map_err(|e| MailError::Delivery(e.to_string()))
    }

    /// A message as a person reads it: the headers, then the body with any quoted-printable
    /// transfer encoding undone.
    pub fn read(&self, entry: &OutboxEntry) -> Result<String, MailError> {
        let raw =
            fs::read_to_string(&entry.path).map_err(|e| MailError::Config(format!("{}: {e}", entry.path.display())))?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
        let quoted = header(&raw, "Content-Transfer-Encoding").eq_ignore_ascii_case("quoted-printable");
        let body = if quoted {
            let decoded = quoted_printable::decode(body.as_bytes(), quoted_printable::ParseMode::Robust)
                .map_err(|e| MailError::Config(format!("{}: {e}", entry.path.display())))?;
            String::from_utf8_lossy(&decoded).into_owned()
        } else {
            body.to_owned()
        };
        Ok(format!("{head}\n\n{}", body.replace("\r\n", "\n")))
    }

    /// Messages, oldest first.
    pub fn list(&self) -> Result<Vec<OutboxEntry>, MailError> {
        let io = |e: std::io::Error| MailError::Config(format!("outbox {}: {e}", self.dir.display()));
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            entries.push(OutboxEntry {
                written: entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH),
                to: header(&text, "To").to_owned(),
                subject: header(&text, "Subject").to_owned(),
                path,
            });
        }
        entries.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
        Ok(entries)
    }

    /// Deletes messages older than `KEEP_FOR`; returns how many.
    pub fn sweep(&self, now: SystemTime) -> Result<usize, MailError> {
        let mut removed = 0;
        for entry in self.list()? {
            if now.duration_since(entry.written).unwrap_or_default() > KEEP_FOR && fs::remove_file(&entry.path).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_is_private_lists_and_sweeps() {
        let temp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(temp.path().join("outbox")).unwrap();
        outbox.write(b"To: a@example.com\r\nSubject: Hello\r\n\r\nbody").await.unwrap();
        let mode = fs::metadata(outbox.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let entries = outbox.list().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].to.as_str(), entries[0].subject.as_str()), ("a@example.com", "Hello"));
        assert_eq!(fs::metadata(&entries[0].path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(outbox.sweep(SystemTime::now()).unwrap(), 0);
        assert_eq!(outbox.sweep(SystemTime::now() + KEEP_FOR + Duration::from_secs(60)).unwrap(), 1);
        assert!(outbox.list().unwrap().is_empty());
    }
}
