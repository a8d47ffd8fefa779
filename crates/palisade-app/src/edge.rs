//! What a node's edge (rate limits, CORS) needs to know about an organization before any
//! session is checked — its plan tier and allowed browser origins — cached briefly, and the
//! instance administrator's way to change the plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_core::{OrgId, Plan, SessionProof};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::orgs;
use serde_json::json;
use time::OffsetDateTime;

use crate::{App, AppError};

/// How long a node trusts what it read: a change reaches every node within this.
const EDGE_TTL: time::Duration = time::Duration::seconds(30);
/// Entries kept before the cache starts over (bounded memory under many organizations).
const EDGE_CACHE_MAX: usize = 100_000;

/// An organization's edge settings.
#[derive(Debug, Clone, Default)]
pub struct OrgEdge {
    pub plan: Plan,
    /// Normalised origins (`https://app.example.com`), exactly as `Origin` headers carry them.
    pub cors_origins: Arc<Vec<String>>,
}

/// Organization → (settings, read at).
#[derive(Default)]
pub struct EdgeCache {
    entries: Mutex<HashMap<OrgId, (OrgEdge, OffsetDateTime)>>,
}

impl EdgeCache {
    fn get(&self, org: OrgId, now: OffsetDateTime) -> Option<OrgEdge> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&org).filter(|(_, at)| now - *at < EDGE_TTL).map(|(edge, _)| edge.clone())
    }

    fn put(&self, org: OrgId, edge: OrgEdge, now: OffsetDateTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= EDGE_CACHE_MAX {
            entries.clear();
        }
        entries.insert(org, (edge, now));
    }

    /// Forgets one organization (after a change on this node).
    pub(crate) fn forget(&self, org: OrgId) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&org);
    }
}

impl App {
    /// The organization's edge settings, from the cache or the database. When the database
    /// cannot say: the lowest tier and no origins — a failure never widens anything.
    pub async fn org_edge(&self, org: OrgId) -> OrgEdge {
        let now = self.clock.now();
        if let Some(edge) = self.edge.get(org, now) {
            return edge;
        }
        let mut tx = Tx::anonymous();
        let step = orgs::edge_settings(&mut tx, org);
        match tx.run(&self.db).await.and_then(|mut results| results.get(step)) {
            Ok((plan, origins)) => {
                let edge = OrgEdge { plan, cors_origins: Arc::new(origins) };
                self.edge.put(org, edge.clone(), now);
                edge
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading an organization's edge settings failed; standard plan, no origins");
                OrgEdge::default()
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
        self.edge.forget(org);
        tracing::info!(org = %org, from = previous.as_str(), to = plan.as_str(), "organization plan changed");
        Ok(())
    }
}
