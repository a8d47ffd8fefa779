//! Deleting an organization is crypto-shredding (E6): its owner schedules it after a step-up, a
//! grace period (default 7 days) lets it be cancelled, then the job destroys every wrapping key
//! the organization ever had in the key provider — after which no copy of its data keys (a
//! database dump, a backup) unwraps — and only then deletes its rows. Irreversible by design.

use palisade_core::{EventId, OrgId, SessionProof};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::org_deletion;
use palisade_store::repo::security;
use serde_json::json;
use time::OffsetDateTime;

use crate::keyring::{Scope, provider_error};
use crate::{App, AppError, STEP_UP_WINDOW};

impl App {
    /// Schedules the organization's deletion after the grace period (owners only, step-up).
    pub async fn schedule_org_deletion(
        &self,
        proof: &SessionProof,
        org: OrgId,
        meta: &RequestMeta,
    ) -> Result<OffsetDateTime, AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        security::require_recent_auth(&mut tx, now, STEP_UP_WINDOW);
        let due = org_deletion::schedule(&mut tx, org, self.policy.org_deletion_grace);
        audit::record(
            &mut tx,
            self.audit("org.deletion_scheduled", meta).org(org).target("org", org.as_uuid()).details(json!({
                "grace_days": self.policy.org_deletion_grace.whole_days().max(1),
            })),
        );
        match tx.run(&self.db).await {
            Err(palisade_store::StoreError::Conflict { .. }) => {
                Err(AppError::Conflict("the organization's deletion is already scheduled; see deletion_due_at".into()))
            }
            other => Ok(other?.get(due)?),
        }
    }

    /// Cancels a scheduled deletion (owners only; no step-up: keeping data never waits).
    pub async fn cancel_org_deletion(
        &self,
        proof: &SessionProof,
        org: OrgId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        org_deletion::cancel(&mut tx, org);
        audit::record(&mut tx, self.audit("org.deletion_cancelled", meta).org(org).target("org", org.as_uuid()));
        tx.run(&self.db).await?;
        Ok(())
    }

    /// Shreds every organization whose grace period is over: wrapping keys destroyed in the
    /// provider first (a crash after that only leaves rows nobody can decrypt, deleted on the
    /// next run), then its rows. Returns how many organizations were shredded.
    pub async fn run_org_shredding(&self) -> Result<usize, AppError> {
        let now = self.clock.now();
        let mut tx = Tx::anonymous();
        let due = org_deletion::due(&mut tx, now, 20);
        let due = tx.run(self.key_jobs_db()?).await?.get(due)?;
        let mut shredded = 0;
        for org in &due {
            // One organization that cannot be shredded now (a provider outage, a legal hold set
            // meanwhile) must not hold up the others.
            match self.shred_one(org, now).await {
                Ok(()) => shredded += 1,
                Err(err) => tracing::warn!(org = %org.org, error = %err, "organization shredding deferred"),
            }
        }
        Ok(shredded)
    }

    /// Claims the organization (no cancel after this), destroys its wrapping keys, deletes its rows.
    async fn shred_one(&self, org: &org_deletion::DueOrg, now: OffsetDateTime) -> Result<(), AppError> {
        let mut tx = Tx::anonymous();
        org_deletion::begin(&mut tx, org.org, now);
        tx.run(self.key_jobs_db()?).await?;
        // Every generation a KEK rotation may have made, and one past it (a rotation that crashed
        // after creating its next key).
        let names: Vec<String> =
            (1..=org.generations.max(0) as u32 + 1).map(|n| Scope::Org(org.org).wrapping_key_name(n)).collect();
        let provider = self.keyring.provider().clone();
        tokio::task::spawn_blocking(move || names.iter().try_for_each(|name| provider.destroy_key(name)))
            .await
            .map_err(|e| AppError::Internal(format!("key provider task: {e}")))?
            .map_err(provider_error)?;
        self.keyring.forget(Scope::Org(org.org));
        let mut tx = Tx::anonymous();
        org_deletion::shred(&mut tx, org.org, now, EventId::new(&*self.clock, &*self.random).as_uuid());
        tx.run(self.key_jobs_db()?).await?;
        self.edge.forget(org.org);
        tracing::info!(org = %org.org, name = %org.name, "organization shredded: keys destroyed, rows deleted");
        Ok(())
    }
}
