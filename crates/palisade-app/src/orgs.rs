//! Organizations (tenants) and their members.

use palisade_core::{EventId, OrgId, OrgName, OrgRole, SessionTokenHash};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, Actor, NewEvent, Outcome, RequestMeta};
use palisade_store::repo::orgs::{self, Member, Org};
use serde_json::json;

use crate::{App, AppError};

/// A partial update of an organization's settings. `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct OrgPatch {
    pub name: Option<String>,
}

/// Roles allowed to change organization settings, from the permission matrix in core.
fn roles_that_update_orgs() -> Vec<&'static str> {
    use OrgRole::*;
    [Owner, Admin, Manager, Member, Contractor, Viewer]
        .into_iter()
        .filter(|r| r.can_update_org())
        .map(OrgRole::as_str)
        .collect()
}

impl App {
    fn event<'a>(
        &self,
        org: OrgId,
        action: &'static str,
        outcome: Outcome,
        details: serde_json::Value,
        meta: &'a RequestMeta,
    ) -> NewEvent<'a> {
        NewEvent {
            id: EventId::new(&*self.clock, &*self.random),
            org: Some(org),
            at: self.clock.now(),
            actor: Actor::SessionUser,
            action,
            target_kind: Some("org"),
            target_id: Some(org.as_uuid()),
            outcome,
            details,
            meta,
        }
    }

    /// Creates an organization; the caller becomes its owner.
    pub async fn create_org(&self, proof: &SessionTokenHash, name: &str, meta: &RequestMeta) -> Result<Org, AppError> {
        let name = OrgName::parse(name)?;
        let now = self.clock.now();
        let id = OrgId::new(&*self.clock, &*self.random);
        let mut tx = Tx::new_tenant(proof, now, id);
        orgs::create(&mut tx, id, &name, now);
        audit::record(&mut tx, self.event(id, "org.created", Outcome::Success, json!({}), meta));
        let created = orgs::get(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(created)?)
    }

    /// The organizations the caller belongs to.
    pub async fn list_orgs(&self, proof: &SessionTokenHash) -> Result<Vec<Org>, AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let list = orgs::list_mine(&mut tx);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    pub async fn get_org(&self, proof: &SessionTokenHash, id: OrgId) -> Result<Org, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), id);
        let org = orgs::get(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(org)?)
    }

    /// Changes settings (owner or admin). A refused attempt is audited as denied.
    pub async fn update_org(
        &self,
        proof: &SessionTokenHash,
        id: OrgId,
        patch: OrgPatch,
        meta: &RequestMeta,
    ) -> Result<Org, AppError> {
        let Some(raw_name) = patch.name else {
            return Err(AppError::Validation(vec![palisade_core::ValidationError::new(
                "",
                "give at least one field to change: name",
            )]));
        };
        let name = OrgName::parse(&raw_name)?;
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, id);
        tx.require_role(&roles_that_update_orgs());
        let updated = orgs::rename(&mut tx, id, &name, now);
        audit::record(&mut tx, self.event(id, "org.updated", Outcome::Success, json!({"changed": ["name"]}), meta));
        match tx.run(&self.db).await {
            Ok(mut results) => Ok(results.get(updated)?),
            Err(palisade_store::StoreError::Forbidden) => {
                let mut tx = Tx::tenant(proof, self.clock.now(), id);
                audit::record(
                    &mut tx,
                    self.event(id, "org.updated", Outcome::Denied, json!({"changed": ["name"]}), meta),
                );
                tx.run(&self.db).await?;
                Err(AppError::Forbidden)
            }
            Err(other) => Err(other.into()),
        }
    }

    pub async fn list_members(&self, proof: &SessionTokenHash, id: OrgId) -> Result<Vec<Member>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), id);
        let members = orgs::members(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(members)?)
    }
}
