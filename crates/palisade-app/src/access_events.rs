//! Group commit for the audit events of single-record reads of sensitive fields.
//!
//! Every such read, shown or masked, writes an event, and nothing is returned until that event
//! is committed (fail closed). Written in the read's own transaction, that made every read a
//! write transaction with its own commit and WAL flush. Instead, the read transaction stays
//! read-only, and the events of the reads of one organization that arrive together are written
//! by one transaction with one statement: a read waits for the commit of the transaction
//! carrying its event, and fails if that fails.
//!
//! Per organization at most one such transaction is in flight; events arriving meanwhile form
//! the next one. The transaction enters the tenant with the proof of the first waiting caller
//! (its session and membership are checked again, as for any transaction). Each event names its
//! own caller as actor, resolved by that caller's read transaction. If a grouped write fails
//! (say that first caller's session was revoked a moment ago), each event is written again on
//! its own, under its own caller's proof, so one caller's state never decides another's read.

use std::collections::HashMap;
use std::sync::Mutex;

use palisade_core::{OrgId, SessionProof};
use palisade_store::repo::records::{self, SensitiveAccess};
use palisade_store::{StoreError, Tx};
use tokio::sync::oneshot;

use crate::{App, AppError};

/// The most events one transaction writes.
const MAX_GROUP: usize = 256;

struct Waiting {
    proof: SessionProof,
    access: SensitiveAccess,
    reply: oneshot::Sender<Result<(), AppError>>,
}

/// The events waiting to be written, by organization. An organization is present while a
/// writer task runs for it; that task removes it once it finds nothing left to write.
#[derive(Default)]
pub struct AccessEvents {
    waiting: Mutex<HashMap<OrgId, Vec<Waiting>>>,
}

impl App {
    /// Writes the audit event of one sensitive read, grouped with concurrent ones of the same
    /// organization, and returns once it is committed.
    pub(crate) async fn write_sensitive_access(
        &self,
        proof: &SessionProof,
        org: OrgId,
        access: SensitiveAccess,
    ) -> Result<(), AppError> {
        let (reply, committed) = oneshot::channel();
        let waiting = Waiting { proof: *proof, access, reply };
        let start_writer = {
            let mut queues = self.access_events.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match queues.get_mut(&org) {
                Some(queue) => {
                    queue.push(waiting);
                    false
                }
                None => {
                    queues.insert(org, vec![waiting]);
                    true
                }
            }
        };
        if start_writer {
            // A task of its own: the writer outlives any one request (a client that leaves does
            // not stop the events of the others, nor its own: its read did happen).
            tokio::spawn(self.clone().write_access_events(org));
        }
        committed.await.unwrap_or_else(|_| Err(AppError::Internal("the access-event writer stopped".into())))
    }

    async fn write_access_events(self, org: OrgId) {
        loop {
            let group: Vec<Waiting> = {
                let mut queues = self.access_events.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let Some(queue) = queues.get_mut(&org) else { return };
                if queue.is_empty() {
                    queues.remove(&org);
                    return;
                }
                let take = queue.len().min(MAX_GROUP);
                queue.drain(..take).collect()
            };
            self.write_group(org, group).await;
        }
    }

    async fn write_group(&self, org: OrgId, group: Vec<Waiting>) {
        let accesses: Vec<SensitiveAccess> = group.iter().map(|w| w.access.clone()).collect();
        let written = self.write_accesses(&group[0].proof, org, &accesses).await;
        match written {
            Ok(()) => {
                for waiting in group {
                    let _ = waiting.reply.send(Ok(()));
                }
            }
            Err(_) if group.len() > 1 => {
                // Rare (a caller's state changed within the last few milliseconds, or the
                // database failed): each event alone, in turn.
                for waiting in group {
                    let written = self.write_accesses(&waiting.proof, org, std::slice::from_ref(&waiting.access)).await;
                    let _ = waiting.reply.send(written.map_err(refusal));
                }
            }
            Err(err) => {
                let waiting = group.into_iter().next().expect("a group is never empty");
                let _ = waiting.reply.send(Err(refusal(err)));
            }
        }
    }

    async fn write_accesses(
        &self,
        proof: &SessionProof,
        org: OrgId,
        accesses: &[SensitiveAccess],
    ) -> Result<(), StoreError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        records::record_sensitive_accesses(&mut tx, org, accesses);
        tx.run(&self.db).await.map(drop)
    }
}

/// What a read whose event could not be written answers. The caller's own state (session
/// revoked, membership gone) answers as usual; anything else means the audit log cannot take the
/// event now, and the read is refused as unavailable, never shown.
fn refusal(err: StoreError) -> AppError {
    match err {
        StoreError::Database(cause) => {
            tracing::error!(error = %cause, "the audit event of a sensitive read could not be written; the read is refused");
            AppError::Unavailable("the audit log cannot record this read now, so nothing was shown; retry later".into())
        }
        other => other.into(),
    }
}
