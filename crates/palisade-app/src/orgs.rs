//! Organizations (tenants) and their members.

use palisade_core::{OrgId, OrgName, Permission, SessionProof, UserId, ValidationError};
use palisade_store::Tx;
use palisade_store::repo::audit::{self, NewEvent, Outcome, RequestMeta};
use palisade_store::repo::orgs::{self, Member, Org};
use palisade_store::repo::sessions;
use serde_json::json;

use crate::{App, AppError};

/// A partial update of an organization's settings. `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct OrgPatch {
    pub name: Option<String>,
    /// `Some(None)` returns to the instance default.
    pub session_idle_minutes: Option<Option<i64>>,
    /// "off", "admins" or "all".
    pub mfa_policy: Option<String>,
    /// 365 to 36500 days.
    pub audit_retention_days: Option<i64>,
    pub legal_hold: Option<bool>,
}

/// Allowed audit retention, in days (at least a year).
pub const RETENTION_DAYS: std::ops::RangeInclusive<i64> = 365..=36500;

/// Allowed range of an organization's inactivity timeout, in minutes (5 minutes to 24 hours).
pub const IDLE_MINUTES: std::ops::RangeInclusive<i64> = 5..=1440;

impl App {
    /// An event about this organization.
    fn org_event<'a>(&self, org: OrgId, action: &'static str, meta: &'a RequestMeta) -> NewEvent<'a> {
        self.audit(action, meta).org(org).target("org", org.as_uuid())
    }

    /// Creates an organization; the caller becomes its owner.
    pub async fn create_org(&self, proof: &SessionProof, name: &str, meta: &RequestMeta) -> Result<Org, AppError> {
        let name = OrgName::parse(name)?;
        let now = self.clock.now();
        let id = OrgId::new(&*self.clock, &*self.random);
        let mut tx = Tx::new_tenant(proof, now, id);
        orgs::create(&mut tx, id, &name, now);
        audit::record(&mut tx, self.org_event(id, "org.created", meta));
        let created = orgs::get(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(created)?)
    }

    /// The organizations the caller belongs to.
    pub async fn list_orgs(&self, proof: &SessionProof) -> Result<Vec<Org>, AppError> {
        let mut tx = Tx::session(proof, self.clock.now());
        let list = orgs::list_mine(&mut tx);
        Ok(tx.run(&self.db).await?.get(list)?)
    }

    pub async fn get_org(&self, proof: &SessionProof, id: OrgId) -> Result<Org, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), id);
        let org = orgs::get(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(org)?)
    }

    /// Changes settings (owner or admin). A refused attempt is audited as denied.
    pub async fn update_org(
        &self,
        proof: &SessionProof,
        id: OrgId,
        patch: OrgPatch,
        meta: &RequestMeta,
    ) -> Result<Org, AppError> {
        if patch.name.is_none()
            && patch.session_idle_minutes.is_none()
            && patch.mfa_policy.is_none()
            && patch.audit_retention_days.is_none()
            && patch.legal_hold.is_none()
        {
            return Err(ValidationError::new(
                "",
                "give at least one field to change: name, session_idle_minutes, mfa_policy, audit_retention_days, legal_hold",
            )
            .into());
        }
        let retention = match patch.audit_retention_days {
            Some(days) if !RETENTION_DAYS.contains(&days) => {
                return Err(ValidationError::new("audit_retention_days", "must be 365 to 36500 days").into());
            }
            other => other.map(|d| d as i32),
        };
        let mfa_policy = match patch.mfa_policy.as_deref() {
            None => None,
            Some("off") => Some("off"),
            Some("admins") => Some("admins"),
            Some("all") => Some("all"),
            Some(_) => return Err(ValidationError::new("mfa_policy", "must be \"off\", \"admins\" or \"all\"").into()),
        };
        let name = patch.name.as_deref().map(OrgName::parse).transpose()?;
        let idle = match patch.session_idle_minutes {
            Some(Some(minutes)) if !IDLE_MINUTES.contains(&minutes) => {
                return Err(ValidationError::new(
                    "session_idle_minutes",
                    "must be 5 to 1440 minutes, or null for the default",
                )
                .into());
            }
            Some(minutes) => Some(minutes.map(|m| m as i32)),
            None => None,
        };
        let mut changed = Vec::new();
        if name.is_some() {
            changed.push("name");
        }
        if idle.is_some() {
            changed.push("session_idle_minutes");
        }
        if mfa_policy.is_some() {
            changed.push("mfa_policy");
        }
        if retention.is_some() {
            changed.push("audit_retention_days");
        }
        if patch.legal_hold.is_some() {
            changed.push("legal_hold");
        }
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, id);
        tx.require(Permission::OrgSettings);
        if idle.is_some() || mfa_policy.is_some() || retention.is_some() || patch.legal_hold.is_some() {
            tx.require(Permission::SecuritySettings);
        }
        let updated = orgs::update(
            &mut tx,
            id,
            &orgs::OrgChange {
                name: name.as_ref(),
                session_idle_minutes: idle,
                mfa_policy,
                audit_retention_days: retention,
                legal_hold: patch.legal_hold,
            },
            now,
        );
        if name.is_some() {
            audit::record(&mut tx, self.org_event(id, "org.updated", meta).details(json!({"changed": ["name"]})));
        }
        if let Some(minutes) = idle {
            audit::record(
                &mut tx,
                self.org_event(id, "settings.changed", meta).details(json!({"session_idle_minutes": minutes})),
            );
        }
        if let Some(policy) = mfa_policy {
            audit::record(&mut tx, self.org_event(id, "settings.changed", meta).details(json!({"mfa_policy": policy})));
        }
        if let Some(days) = retention {
            audit::record(
                &mut tx,
                self.org_event(id, "settings.changed", meta).details(json!({"audit_retention_days": days})),
            );
        }
        if let Some(hold) = patch.legal_hold {
            audit::record(&mut tx, self.org_event(id, "settings.changed", meta).details(json!({"legal_hold": hold})));
        }
        match tx.run(&self.db).await {
            Ok(mut results) => Ok(results.get(updated)?),
            Err(palisade_store::StoreError::Forbidden) => {
                self.record_denied(proof, id, "org.updated", json!({"changed": changed}), meta).await?;
                Err(AppError::Forbidden)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Writes the audit event of a refused action, in a transaction of its own (the refused one
    /// was rolled back).
    async fn record_denied(
        &self,
        proof: &SessionProof,
        id: OrgId,
        action: &'static str,
        details: serde_json::Value,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), id);
        audit::record(&mut tx, self.org_event(id, action, meta).outcome(Outcome::Denied).details(details));
        tx.run(&self.db).await?;
        Ok(())
    }

    /// Ends a member's current sessions for this organization (owner or admin; only an owner may
    /// do it to an owner). The member's sessions keep working for their other organizations.
    pub async fn revoke_member_sessions(
        &self,
        proof: &SessionProof,
        id: OrgId,
        member: UserId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, id);
        tx.require(Permission::MembersManage);
        sessions::cut_off_member(&mut tx, id, member, now);
        let mut event = self.org_event(id, "user.sessions_revoked", meta).details(json!({"scope": "org"}));
        event.target_kind = Some("user");
        event.target_id = Some(member.as_uuid());
        audit::record(&mut tx, event);
        match tx.run(&self.db).await {
            Ok(_) => Ok(()),
            Err(palisade_store::StoreError::Forbidden) => {
                self.record_denied(proof, id, "user.sessions_revoked", json!({"target": member.to_string()}), meta)
                    .await?;
                Err(AppError::Forbidden)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The roles of this organization and what each may do (members only; others get 404).
    pub async fn list_members(&self, proof: &SessionProof, id: OrgId) -> Result<Vec<Member>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), id);
        let members = orgs::members(&mut tx, id);
        Ok(tx.run(&self.db).await?.get(members)?)
    }
}
