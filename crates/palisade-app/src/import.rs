//! The file of `palisade users import --file F`: accounts from another system, with bcrypt
//! password hashes. A JSON array of `{"email", "name", "password_hash", "email_verified"?}`;
//! every entry is checked before anything is written. Pure (no I/O), so the fuzz target
//! `import_users` runs it on arbitrary input; the CLI (palisade-server `import`) writes the result.

use palisade_core::{Email, PersonName};
use palisade_store::repo::users::ImportedUser;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    email: String,
    name: String,
    password_hash: String,
    #[serde(default)]
    email_verified: bool,
}

/// Most problems listed in the error.
const SHOWN_PROBLEMS: usize = 20;

/// Parses and checks the whole file; every problem is reported with its entry number. The
/// error is the message for the operator.
pub fn parse_users(text: &str) -> Result<Vec<ImportedUser>, String> {
    let entries: Vec<Entry> = serde_json::from_str(text).map_err(|e| {
        format!("the file must be a JSON array of {{email, name, password_hash, email_verified?}}: {e}")
    })?;
    let mut problems = Vec::new();
    let mut users = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let n = i + 1;
        let email = Email::parse(&entry.email).map_err(|e| format!("entry {n}: email {}", e.message));
        let name = PersonName::parse(&entry.name).map_err(|e| format!("entry {n}: name {}", e.message));
        if !palisade_auth::is_importable_bcrypt(&entry.password_hash) {
            problems.push(format!("entry {n}: password_hash is not a bcrypt hash ($2a$/$2b$/$2y$, cost 4-31)"));
        }
        match (email, name) {
            (Ok(email), Ok(name)) => {
                if !seen.insert(email.as_str().to_owned()) {
                    problems.push(format!("entry {n}: the address appears twice in the file"));
                }
                users.push(ImportedUser {
                    email,
                    name,
                    bcrypt_hash: entry.password_hash,
                    email_verified: entry.email_verified,
                });
            }
            (email, name) => problems.extend([email.err(), name.err()].into_iter().flatten()),
        }
    }
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(SHOWN_PROBLEMS).map(String::as_str).collect();
        return Err(format!(
            "nothing imported: {} problem(s) in the file:\n  {}{}",
            problems.len(),
            shown.join("\n  "),
            if problems.len() > SHOWN_PROBLEMS { "\n  …" } else { "" }
        ));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_and_nothing_passes_half_checked() {
        let hash = "$2b$04$abcdefghijklmnopqrstuuGq6K7Ng8b0NQh4jvM5QFLhxV8TdD7Dy";
        let err = parse_users(&format!(
            r#"[{{"email":"a@example.com","name":"A","password_hash":"{hash}"}},
               {{"email":"nope","name":"","password_hash":"plain"}},
               {{"email":"A@example.com","name":"A again","password_hash":"{hash}"}}]"#
        ))
        .unwrap_err();
        for expected in
            ["entry 2: email", "entry 2: name", "entry 2: password_hash", "entry 3: the address appears twice"]
        {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(parse_users("{}").is_err());
        assert!(parse_users(r#"[{"email":"a@example.com","name":"A","password_hash":"x","admin":true}]"#).is_err());
        let ok = parse_users(&format!(r#"[{{"email":"a@example.com","name":"A","password_hash":"{hash}"}}]"#)).unwrap();
        assert_eq!(ok.len(), 1);
    }
}
