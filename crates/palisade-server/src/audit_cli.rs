//! `palisade audit verify` and `palisade audit checkpoint`: the operator's (and an auditor's)
//! check of an organization's chain or the instance chain (the events of no organization), over
//! the admin connection, independent of any running server. Verify exits non-zero when broken.

use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::{Context, Result};
use futures::StreamExt;
use palisade_app::audit_verify::{ChainSource, verify_chain};
use palisade_app::{Anchor, CheckpointDocument, Report};
use palisade_core::OrgId;
use palisade_store::StoreError;
use palisade_store::repo::audit_chain::{self, ChainRow, Checkpoint, Head};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, RowStream};

/// Reads one organization's chain inside the operator's transaction (tenant set once), as one
/// query whose rows stream in while earlier ones are hashed: planned like a COPY of the same rows
/// (a cursor would get a fast-start plan of index lookups and no parallel workers, about half the
/// speed over a million events).
struct OperatorChain<'a> {
    client: &'a Client,
    org: OrgId,
    rows: Option<Pin<Box<RowStream>>>,
}

fn pg(err: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

impl ChainSource for OperatorChain<'_> {
    async fn head(&mut self) -> Result<Option<Head>, StoreError> {
        let row = self.client.query_opt(audit_chain::HEAD, &[&self.org.as_uuid()]).await.map_err(pg)?;
        Ok(row.map(|r| Head { seq: r.get(0), hash: r.get(1), base_seq: r.get(2), base_hash: r.get(3) }))
    }
    async fn page(&mut self, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError> {
        if self.rows.is_none() {
            // The first call starts the one query; later calls take its next rows.
            let params: [&(dyn ToSql + Sync); 2] = [&self.org.as_uuid(), &after];
            let query = if audit_chain::is_instance_chain(self.org) {
                audit_chain::CHAIN_ROWS_INSTANCE
            } else {
                audit_chain::CHAIN_ROWS
            };
            let stream = self.client.query_raw(query, params).await.map_err(pg)?;
            self.rows = Some(Box::pin(stream));
        }
        let Some(rows) = self.rows.as_mut() else { return Ok(Vec::new()) };
        let mut page = Vec::with_capacity(usize::try_from(limit).unwrap_or(0));
        while (page.len() as i64) < limit {
            match rows.next().await {
                Some(row) => page.push(audit_chain::chain_row(row.map_err(pg)?)),
                None => break,
            }
        }
        Ok(page)
    }
    async fn unchained(&mut self) -> Result<i64, StoreError> {
        let query = if audit_chain::is_instance_chain(self.org) {
            audit_chain::UNCHAINED_INSTANCE
        } else {
            audit_chain::UNCHAINED
        };
        let row = self.client.query_one(query, &[&self.org.as_uuid()]).await.map_err(pg)?;
        Ok(row.get(0))
    }
    async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self.client.query(audit_chain::CHECKPOINTS, &[&self.org.as_uuid(), &10_000i64]).await.map_err(pg)?;
        Ok(rows.iter().map(audit_chain::checkpoint_row).collect())
    }
}

/// Which chain a command names: `--org org_…` or `--instance`.
pub fn chain_named(org: Option<&str>, instance: bool) -> Result<OrgId> {
    match (org, instance) {
        (Some(org), false) => org.parse().map_err(|_| anyhow::anyhow!("--org must be an organization id (org_…)")),
        (None, true) => Ok(audit_chain::instance_chain()),
        _ => anyhow::bail!(
            "name one chain: --org org_… (an organization's) or --instance (sign-ups, sign-ins, lockouts)"
        ),
    }
}

/// How output names a chain.
pub fn chain_label(chain: OrgId) -> String {
    if audit_chain::is_instance_chain(chain) { "instance chain".into() } else { chain.to_string() }
}

/// Prints the newest signed checkpoint of `chain` as the document `--checkpoint` takes back.
pub async fn print_checkpoint(client: &Client, chain: OrgId) -> Result<ExitCode> {
    // Read only: a seal pass would chain pending events but sign nothing (the server signs), so
    // it could not make a newer checkpoint. The newest head checkpoint (a truncation checkpoint marks where a cut chain starts, and
    // is not a document `--checkpoint` takes).
    let rows = client
        .query(audit_chain::CHECKPOINTS, &[&chain.as_uuid(), &10_000i64])
        .await
        .context("reading the checkpoints")?;
    let newest = rows.iter().map(audit_chain::checkpoint_row).find(|c| c.kind == "head");
    let Some(newest) = newest else {
        eprintln!(
            "{}: no signed checkpoint yet: the server signs one at least hourly while events arrive, and every 1,000 events",
            chain_label(chain)
        );
        return Ok(ExitCode::FAILURE);
    };
    let document = CheckpointDocument::from_stored(chain, &newest);
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(ExitCode::SUCCESS)
}

/// Verifies one chain (an organization's, or the instance chain) in one consistent snapshot, as
/// the operator.
pub async fn verify_org(client: &Client, org: OrgId, kept: &[Anchor]) -> Result<Report> {
    // No JIT: one pass over a million rows gains less from compiled expressions than the
    // 0.1–0.2 s it takes to compile them (the count of stray events alone paid 0.12 s).
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL jit = off").await?;
    client.query_one("SELECT set_config('app.tenant_id', $1, true)", &[&org.as_uuid().to_string()]).await?;
    let report = verify_chain(&mut OperatorChain { client, org, rows: None }, org, kept).await;
    client.batch_execute("COMMIT").await?;
    Ok(report?)
}

/// Seals what is pending, verifies, prints the verdict; exit 1 when the chain is broken.
pub async fn verify(client: &Client, org: OrgId, checkpoint: Option<&Path>, json: bool) -> Result<ExitCode> {
    let kept = match checkpoint {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let document: CheckpointDocument = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a checkpoint document", path.display()))?;
            vec![document.anchor(org).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?]
        }
    };
    client.query_one("SELECT palisade.seal_audit_events(100000)", &[]).await.context("sealing pending events")?;
    let report = verify_org(client, org, &kept).await?;
    let verdict = &report.verdict;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "org": org.to_string(),
                "instance": audit_chain::is_instance_chain(org),
                "valid": verdict.valid,
                "events": verdict.events,
                "first_bad_seq": verdict.first_bad_seq,
                "reason": verdict.reason,
                "checkpoints_verified": report.checkpoints_verified,
            })
        );
    } else if verdict.valid {
        println!(
            "{}: chain VALID — {} events recomputed, {} signed checkpoint(s) verified.",
            chain_label(org),
            verdict.events,
            report.checkpoints_verified
        );
    } else {
        println!(
            "{}: chain BROKEN at position {} — {}. {} events verified before it.",
            chain_label(org),
            verdict.first_bad_seq.unwrap_or(0),
            verdict.reason.as_deref().unwrap_or("unknown"),
            verdict.events
        );
    }
    Ok(if verdict.valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
