//! `palisade users import --file F`: accounts from another system, with bcrypt password hashes
//! (rehashed to argon2id at each account's first successful sign-in).
//!
//! The file is a JSON array: `[{"email", "name", "password_hash", "email_verified"?}]`. Every
//! entry is checked before anything is written; then all are imported in one transaction.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use palisade_store::repo::users;

pub async fn run(admin: &mut tokio_postgres::Client, file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // Parsed and checked in palisade-app (pure, fuzzed by fuzz/ `import_users`).
    let users = palisade_app::import::parse_users(&text).map_err(anyhow::Error::msg)?;
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
