//! `palisade keys status | rotate --org | rotate-kek`: the data keys of the instance and of every
//! organization, an on-demand rotation driven to the end with a progress bar, and a rotation of
//! the key provider's master key with every wrapping key.

use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use palisade_app::{App, AppError, ROTATION_BATCH};
use palisade_core::OrgId;

fn when(t: Option<time::OffsetDateTime>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.and_then(|t| t.format(&format).ok()).unwrap_or_else(|| "-".into())
}

/// `palisade keys status`.
pub async fn status(app: &App) -> Result<ExitCode> {
    let (instance, orgs) = app.all_key_status().await?;
    let info = app.keyring.provider().info();
    println!("Key provider: {} (master key {})", info.kind, info.master_key_id);
    println!();
    println!(
        "{:<40}  {:<31}  {:<8}  {:<16}  {:<16}  {:>8}",
        "SCOPE", "DATA KEY", "STATE", "CREATED", "NEXT ROTATION", "VALUES"
    );
    for key in &instance {
        let state = if key.retired_at.is_none() { "active" } else { "retired" };
        let id = palisade_app::keyring::data_key_label(key.id);
        println!(
            "{:<40}  {:<31}  {:<8}  {:<16}  {:<16}  {:>8}",
            "instance",
            id,
            state,
            when(Some(key.created_at)),
            "-",
            "-"
        );
    }
    for (org, name, status) in &orgs {
        let scope = format!("{name} ({org})");
        for key in &status.keys {
            let active = key.key.retired_at.is_none();
            let next = if active { when(status.next_rotation_at()) } else { "-".into() };
            println!(
                "{:<40}  {:<31}  {:<8}  {:<16}  {:<16}  {:>8}",
                scope,
                palisade_app::keyring::data_key_label(key.key.id),
                if active { "active" } else { "retired" },
                when(Some(key.key.created_at)),
                next,
                key.values_left
            );
        }
        if status.rotating() {
            println!("{:<40}  rotation running: {} values left to re-encrypt", "", status.values_left_to_reencrypt());
        }
    }
    if orgs.is_empty() {
        println!("No organization has a data key yet (one is made when it first stores a secret or sensitive field).");
    }
    Ok(ExitCode::SUCCESS)
}

/// `palisade keys rotate --org ORG`: a new data key now, then every value re-encrypted.
pub async fn rotate(app: &App, org: &str) -> Result<ExitCode> {
    let org: OrgId = org.parse().with_context(|| format!("{org:?} is not an organization id (org_…)"))?;
    match app.start_org_key_rotation(org, "on demand").await {
        Ok(()) => println!("{org}: a new data key encrypts from now on; re-encrypting what the old one holds."),
        Err(AppError::Conflict(_)) => println!("{org}: a rotation is already running; moving it forward."),
        Err(AppError::NotFound) => {
            eprintln!("error: no organization {org}; see `palisade keys status`.");
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err.into()),
    }
    let total = app.values_left_to_reencrypt(org).await?.max(0) as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} values re-encrypted ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut reencrypted = 0;
    let deleted = loop {
        let step = app.rotation_step(org, ROTATION_BATCH).await?;
        bar.inc(step.reencrypted as u64);
        reencrypted += step.reencrypted;
        if step.done {
            break step.retired_key_deleted;
        }
    };
    bar.finish_and_clear();
    println!("{org}: rotation complete; {reencrypted} values re-encrypted under the new data key.");
    if deleted {
        println!("The old data key is deleted.");
    } else {
        let wait = app.retired_key_min_age().whole_seconds();
        println!(
            "The old data key is deleted by the server's rotation job once every node has dropped it from its cache ({wait} s after the rotation started)."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `palisade keys rotate-kek`.
pub async fn rotate_kek(app: &App) -> Result<ExitCode> {
    let before = app.keyring.provider().info();
    let rotated = app
        .rotate_kek(|scope, moved| println!("{scope}: {moved} data key(s) rewrapped under a new wrapping key"))
        .await?;
    let after = app.keyring.provider().info();
    if rotated {
        println!(
            "The {} provider's master key is replaced ({} → {}).",
            after.kind, before.master_key_id, after.master_key_id
        );
    } else {
        println!(
            "The {} provider's master key is managed by the HSM itself; rotate it with the HSM's tools.",
            after.kind
        );
    }
    println!(
        "Old wrapping keys are destroyed. Back up the key store now: older backups of it still open older data keys."
    );
    Ok(ExitCode::SUCCESS)
}
