//! Parsed input values ("parse, don't validate"): a constructor is the only way in.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// One field that failed parsing; the API lists these in a 422 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON pointer of the offending field, e.g. `/email`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: format!("/{field}"), message: message.into() }
    }
}

fn has_control_chars(text: &str) -> bool {
    text.chars().any(|c| c.is_control())
}

/// A normalized email address (trimmed, lower-cased), at most 254 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 254 {
            return Err(ValidationError::new("email", "must be an email address of at most 254 characters"));
        }
        let normalized = trimmed.to_lowercase();
        if !email_address::EmailAddress::is_valid(&normalized) || !normalized.contains('.') {
            return Err(ValidationError::new("email", "is not a valid email address"));
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Email addresses are personal data: keep them out of debug output and so out of logs.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

fn parse_label(field: &str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > max {
        return Err(ValidationError::new(field, format!("must be 1 to {max} characters")));
    }
    if has_control_chars(trimmed) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A person's display name.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        parse_label("name", raw, 100).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

/// An organization's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        parse_label("name", raw, 100).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A candidate password: 12 to 256 characters. Strength is judged in `palisade-auth`.
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: SecretString) -> Result<Self, ValidationError> {
        let len = raw.expose_secret().chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&len) {
            return Err(ValidationError::new(
                "password",
                format!("must be {} to {} characters long", Self::MIN_CHARS, Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalized_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn labels_refuse_empty_long_and_control_characters() {
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        assert!(OrgName::parse("bad\u{0}name").is_err());
        assert_eq!(OrgName::parse(" Acme ").unwrap().as_str(), "Acme");
    }

    #[test]
    fn password_length_bounds_count_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("é".repeat(12).into()).is_ok());
        assert!(Password::parse("x".repeat(257).into()).is_err());
        assert_eq!(format!("{:?}", Password::parse("correct horse battery".into()).unwrap()), "Password(<redacted>)");
    }
}

/// A collection's name, which is also its address in URLs: `[a-z][a-z0-9_]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && raw.len() <= 63 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "name",
                "must start with a lower-case letter, then up to 62 lower-case letters, digits or _",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
