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
    /// Browser origins allowed to call the organization's API routes (CORS); `[]` for none.
    pub cors_origins: Option<Vec<String>>,
}

/// The most origins one organization may allow.
pub const MAX_CORS_ORIGINS: usize = 20;

/// `https://app.example.com[:port]` as browsers send it in `Origin`; plain http only for
/// localhost (development). Anything with a path, query, credentials or wildcard is refused.
fn check_origins(list: &[String]) -> Result<Vec<String>, AppError> {
    if list.len() > MAX_CORS_ORIGINS {
        return Err(ValidationError::new("cors_origins", "must list at most 20 origins").into());
    }
    let mut errors = Vec::new();
    let mut origins = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let parsed = url::Url::parse(raw).ok().filter(|u| {
            let local = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            (u.scheme() == "https" || (u.scheme() == "http" && local))
                && u.host_str().is_some_and(|h| !h.contains('*'))
                && u.username().is_empty()
                && u.password().is_none()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && !raw.ends_with('/')
        });
        match parsed {
            Some(url) => {
                let origin = url.origin().ascii_serialization();
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            None => errors.push(ValidationError::new(
                &format!("cors_origins/{i}"),
                "must be an origin like https://app.example.com (scheme, host, optional port; http only for localhost)",
            )),
        }
    }
    if errors.is_empty() { Ok(origins) } else { Err(AppError::Validation(errors)) }
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
            && patch.cors_origins.is_none()
        {
            return Err(ValidationError::new(
                "",
                "give at least one field to change: name, session_idle_minutes, mfa_policy, audit_retention_days, legal_hold, cors_origins",
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
        let cors_origins = patch.cors_origins.as_deref().map(check_origins).transpose()?;
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
        if cors_origins.is_some() {
            changed.push("cors_origins");
        }
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, id);
        tx.require(Permission::OrgSettings);
        if idle.is_some()
            || mfa_policy.is_some()
            || retention.is_some()
            || patch.legal_hold.is_some()
            || cors_origins.is_some()
        {
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
                cors_origins: cors_origins.as_deref(),
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
        if let Some(origins) = &cors_origins {
            audit::record(
                &mut tx,
                self.org_event(id, "settings.changed", meta).details(json!({"cors_origins": origins})),
            );
        }
        if let Some(hold) = patch.legal_hold {
            audit::record(&mut tx, self.org_event(id, "settings.changed", meta).details(json!({"legal_hold": hold})));
        }
        match tx.run(&self.db).await {
            Ok(mut results) => {
                // This node applies new origins at once; the others within the cache's 30 s.
                self.edge.forget(id);
                Ok(results.get(updated)?)
            }
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
