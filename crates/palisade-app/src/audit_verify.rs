//! Verifying an organization's audit chain end to end: recompute every position, then hold the
//! chain against stored checkpoints and any the customer kept. Shared by the API (reading as the
//! caller) and `palisade audit verify` (reading as the operator).

use palisade_core::OrgId;
use palisade_store::StoreError;
use palisade_store::repo::audit_chain::{
    ChainRow, ChainVerifier, Checkpoint, Head, Verdict, ZERO_HASH, checkpoint_message,
};
use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

/// Where a verification reads a chain from: the API (a tenant transaction per call, as the
/// caller) or the CLI (the operator's connection).
pub trait ChainSource {
    fn head(&mut self) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;
    fn page(&mut self, after: i64, limit: i64) -> impl Future<Output = Result<Vec<ChainRow>, StoreError>> + Send;
    fn unchained(&mut self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn checkpoints(&mut self) -> impl Future<Output = Result<Vec<Checkpoint>, StoreError>> + Send;
}

/// A checkpoint to hold the chain against: stored ones, or one a customer kept.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: OffsetDateTime,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Report {
    pub verdict: Verdict,
    /// Checkpoints whose signature and position both held.
    pub checkpoints_verified: usize,
}

const VERIFY_PAGE: i64 = 10_000;

/// Recomputes the whole kept chain of `org`, then holds it against every stored checkpoint and
/// the `kept` ones: each must carry a valid signature and name a hash the chain has.
pub async fn verify_chain<S: ChainSource>(source: &mut S, org: OrgId, kept: &[Anchor]) -> Result<Report, StoreError> {
    let Some(head) = source.head().await? else {
        let mut verifier = ChainVerifier::new(0, ZERO_HASH.to_vec());
        let unchained = source.unchained().await?;
        if unchained != 0 {
            verifier.fail(1, unchained_fault(unchained, ""));
        }
        for anchor in kept {
            verifier.fail(anchor.seq, format!("the checkpoint at position {} is not in the chain", anchor.seq));
        }
        return Ok(Report { verdict: verifier.verdict(), checkpoints_verified: 0 });
    };
    let all = source.checkpoints().await?;
    let mut verifier = ChainVerifier::new(head.base_seq, head.base_hash.clone());
    // A chain cut by retention must start where a signed truncation checkpoint says.
    if head.base_seq > 0 {
        let signed = all.iter().any(|c| {
            c.kind == "truncation"
                && c.seq == head.base_seq
                && c.hash == head.base_hash
                && palisade_crypto::signing::verify(
                    c.public_key.as_deref().unwrap_or_default(),
                    &palisade_store::repo::audit_chain::truncation_message(org, c.seq, &c.hash, c.signed_at),
                    &c.signature,
                )
        });
        if !signed {
            let first = head.base_seq + 1;
            verifier
                .fail(first, format!("the chain starts at position {first} without a signed truncation checkpoint"));
        }
    }
    let stored: Vec<Anchor> = all
        .into_iter()
        .filter(|c| c.kind == "head")
        .map(|c| Anchor {
            seq: c.seq,
            hash: c.hash,
            signed_at: c.signed_at,
            public_key: c.public_key.unwrap_or_default(),
            signature: c.signature,
        })
        .collect();
    // A kept checkpoint from before the retention cut can no longer be checked: skipped.
    let anchors: Vec<&Anchor> = stored.iter().chain(kept).filter(|a| a.seq > head.base_seq).collect();
    for anchor in &anchors {
        if !palisade_crypto::signing::verify(
            &anchor.public_key,
            &checkpoint_message(org, anchor.seq, &anchor.hash, anchor.signed_at),
            &anchor.signature,
        ) {
            verifier.fail(anchor.seq, format!("the checkpoint at position {} has no valid signature", anchor.seq));
        }
    }
    // By position, so each row costs one lookup however many checkpoints there are (a million
    // events carry a thousand).
    let mut by_seq: HashMap<i64, Vec<Vec<u8>>> = HashMap::new();
    for anchor in &anchors {
        by_seq.entry(anchor.seq).or_default().push(anchor.hash.clone());
    }
    let anchor_hashes = Arc::new(by_seq);
    let mut verified = 0;
    let mut rows = source.page(head.base_seq, VERIFY_PAGE).await?;
    while let Some(last) = rows.last() {
        let after = last.seq;
        let full = rows.len() as i64 >= VERIFY_PAGE;
        // Hash this page on a blocking thread while the database reads the next one.
        let anchors = anchor_hashes.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut held = 0;
            for row in &rows {
                verifier.feed(row);
                if verifier.is_broken() {
                    break;
                }
                for hash in anchors.get(&row.seq).into_iter().flatten() {
                    if hash.as_slice() != row.hash() {
                        verifier
                            .fail(row.seq, format!("the chain differs from the checkpoint at position {}", row.seq));
                    } else {
                        held += 1;
                    }
                }
            }
            (verifier, held)
        });
        let next = if full { Some(source.page(after, VERIFY_PAGE).await) } else { None };
        let (back, held) = job.await.map_err(|e| StoreError::Unavailable(format!("verification stopped: {e}")))?;
        verifier = back;
        verified += held;
        match next {
            Some(next) if !verifier.is_broken() => rows = next?,
            _ => break,
        }
    }
    if !verifier.is_broken() && (verifier.next_seq() - 1 != head.seq || verifier.last_hash() != head.hash.as_slice()) {
        let seq = verifier.next_seq();
        verifier.fail(seq, format!("the chain ends before its recorded head (position {})", head.seq));
    }
    for anchor in &anchors {
        if anchor.seq > head.seq {
            verifier.fail(anchor.seq, format!("the checkpoint at position {} is not in the kept chain", anchor.seq));
        }
    }
    let unchained = source.unchained().await?;
    if unchained != 0 {
        let seq = verifier.next_seq();
        verifier.fail(seq, unchained_fault(unchained, "sealed-period "));
    }
    Ok(Report { verdict: verifier.verdict(), checkpoints_verified: verified })
}

/// The fault when the chain's length and its events' count disagree: events in no chain
/// position, or (negative) more positions than the chain's events can fill.
fn unchained_fault(unchained: i64, kind: &str) -> String {
    if unchained > 0 {
        format!("{unchained} {kind}event(s) are in no chain position")
    } else {
        format!("the chain holds {} more position(s) than it has events", -unchained)
    }
}

/// A checkpoint as downloaded and kept by a customer (docs/audit.md, "Checkpoints").
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointDocument {
    pub format: String,
    pub org: String,
    pub seq: i64,
    /// The chain hash at `seq`, hex.
    pub hash: String,
    /// UTC with microseconds, exactly as signed.
    pub signed_at: String,
    pub key_id: String,
    /// Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Ed25519 signature of the checkpoint message, base64url without padding.
    pub signature: String,
}

pub const CHECKPOINT_FORMAT: &str = "palisade-audit-checkpoint-v1";
/// A truncation checkpoint: where a chain starts after retention cut it.
pub const TRUNCATION_FORMAT: &str = "palisade-audit-truncation-v1";

impl CheckpointDocument {
    pub fn from_stored(org: OrgId, c: &Checkpoint) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Self {
            format: if c.kind == "truncation" { TRUNCATION_FORMAT.into() } else { CHECKPOINT_FORMAT.into() },
            org: org.to_string(),
            seq: c.seq,
            hash: hex::encode(&c.hash),
            signed_at: palisade_store::repo::audit_chain::checkpoint_time(c.signed_at),
            key_id: c.key_id.clone(),
            public_key: b64.encode(c.public_key.clone().unwrap_or_default()),
            signature: b64.encode(&c.signature),
        }
    }

    /// The anchor this document states, if it is well formed and for `org`.
    pub fn anchor(&self, org: OrgId) -> Result<Anchor, String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if self.format != CHECKPOINT_FORMAT {
            return Err(format!("format must be {CHECKPOINT_FORMAT}"));
        }
        if self.org != org.to_string() {
            return Err("the checkpoint is for another organization".into());
        }
        let hash = hex::decode(&self.hash).ok().filter(|h| h.len() == 32).ok_or("hash must be 64 hex digits")?;
        let signed_at = time::PrimitiveDateTime::parse(
            self.signed_at.trim_end_matches('Z'),
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"),
        )
        .map(|t| t.assume_utc())
        .map_err(|_| "signed_at must look like 2026-11-30T16:15:52.123456Z")?;
        let public_key = b64.decode(&self.public_key).map_err(|_| "public_key must be base64url")?;
        let signature = b64.decode(&self.signature).map_err(|_| "signature must be base64url")?;
        Ok(Anchor { seq: self.seq, hash, signed_at, public_key, signature })
    }
}
