//! Plan tiers: which one an organization is on (cached for the rate limiter, which runs on
//! every request) and the instance administrator's way to change it.

use std::collections::HashMap;
use std::sync::Mutex;

use palisade_core::{OrgId, Plan, SessionProof};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::orgs;
use serde_json::json;
use time::OffsetDateTime;

use crate::{App, AppError};

/// How long a node trusts a plan it read: a change reaches every node within this.
const PLAN_TTL: time::Duration = time::Duration::seconds(30);
/// Entries kept before the cache starts over (bounded memory under many organizations).
const PLAN_CACHE_MAX: usize = 100_000;

/// Organization → (plan, read at).
#[derive(Default)]
pub struct PlanCache {
    entries: Mutex<HashMap<OrgId, (Plan, OffsetDateTime)>>,
}

impl PlanCache {
    fn get(&self, org: OrgId, now: OffsetDateTime) -> Option<Plan> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&org).filter(|(_, at)| now - *at < PLAN_TTL).map(|(plan, _)| *plan)
    }

    fn put(&self, org: OrgId, plan: Plan, now: OffsetDateTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PLAN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(org, (plan, now));
    }
}

impl App {
    /// The organization's plan, from the cache or the database. When the database cannot say,
    /// the lowest tier: a failure never raises anyone's budget.
    pub async fn org_plan(&self, org: OrgId) -> Plan {
        let now = self.clock.now();
        if let Some(plan) = self.plans.get(org, now) {
            return plan;
        }
        let mut tx = Tx::anonymous();
        let step = orgs::plan(&mut tx, org);
        match tx.run(&self.db).await.and_then(|mut results| results.get(step)) {
            Ok(plan) => {
                self.plans.put(org, plan, now);
                plan
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading an organization's plan failed; limiting it as standard");
                Plan::Standard
            }
        }
    }

    /// Puts an organization on `plan` (instance administrators only; audited in that
    /// organization's log).
    pub async fn set_org_plan(
        &self,
        proof: &SessionProof,
        org: OrgId,
        plan: Plan,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::session(proof, now);
        let previous = orgs::set_plan(&mut tx, org, plan, now);
        audit::record(
            &mut tx,
            self.audit("org.plan_changed", meta).org(org).target("org", org.as_uuid()).details(json!({"plan": plan})),
        );
        let previous = tx.run(&self.db).await?.get(previous)?;
        self.plans.put(org, plan, now);
        tracing::info!(org = %org, from = previous.as_str(), to = plan.as_str(), "organization plan changed");
        Ok(())
    }
}
