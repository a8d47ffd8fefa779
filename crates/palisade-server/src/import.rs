//! `palisade users import --file F`: accounts from another system, with bcrypt password hashes
//! (rehashed to argon2id at each account's first successful sign-in).
//!
//! The file is a JSON array: `[{"email", "name", "password_hash", "email_verified"?}]`. Every
//! entry is checked before anything is written; then all are imported in one transaction.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use palisade_core::{Email, PersonName};
use palisade_store::repo::users::{self, ImportedUser};
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

/// Parses and checks the whole file; every problem is reported with its entry number.
pub fn parse(text: &str) -> Result<Vec<ImportedUser>> {
    let entries: Vec<Entry> = serde_json::from_str(text)
        .context("the file must be a JSON array of {email, name, password_hash, email_verified?}")?;
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
        let shown: Vec<&String> = problems.iter().take(20).collect();
        bail!(
            "nothing imported: {} problem(s) in the file:\n  {}{}",
            problems.len(),
            shown.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n  "),
            if problems.len() > 20 { "\n  …" } else { "" }
        );
    }
    Ok(users)
}

pub async fn run(admin: &mut tokio_postgres::Client, file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let users = parse(&text)?;
    let total = users.len();
    eprintln!("Importing {total} account(s) from {}…", file.display());
    let (imported, skipped) = users::import(admin, &users, |done| {
        if done % 500 == 0 || done == total {
            eprint!("\r  {done}/{total}");
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    eprintln!();
    println!(
        "Imported {imported} account(s); skipped {skipped} whose address already has an account. Each sets an argon2id hash at its first sign-in."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_and_nothing_passes_half_checked() {
        let hash = "$2b$04$abcdefghijklmnopqrstuuGq6K7Ng8b0NQh4jvM5QFLhxV8TdD7Dy";
        let err = parse(&format!(
            r#"[{{"email":"a@example.com","name":"A","password_hash":"{hash}"}},
               {{"email":"nope","name":"","password_hash":"plain"}},
               {{"email":"A@example.com","name":"A again","password_hash":"{hash}"}}]"#
        ))
        .unwrap_err()
        .to_string();
        for expected in
            ["entry 2: email", "entry 2: name", "entry 2: password_hash", "entry 3: the address appears twice"]
        {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(parse("{}").is_err());
        assert!(parse(r#"[{"email":"a@example.com","name":"A","password_hash":"x","admin":true}]"#).is_err());
    }
}
