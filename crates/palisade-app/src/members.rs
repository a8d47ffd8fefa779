//! Members: invitations (emailed, single use, 7 days, bound to the invited address), role
//! changes and removal. Each needs `members.manage`; the finer rules are checked in SQL.

use palisade_auth::{INVITATION_TOKEN_PREFIX, hash_token, invitation_org, mint_invitation};
use palisade_core::{Email, InvitationId, OrgId, OrgRole, Permission, SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, Outcome, RequestMeta};
use palisade_store::repo::members::{self, Invitation, NewInvitation};
use palisade_store::{StoreError, Tx};
use serde_json::json;

use crate::{App, AppError};

/// How long an invitation link works.
pub const INVITATION_VALID_FOR: time::Duration = time::Duration::days(7);

fn parse_role(raw: &str) -> Result<OrgRole, AppError> {
    OrgRole::from_db(raw).ok_or_else(|| {
        ValidationError::new("role", "must be one of owner, admin, manager, member, contractor, viewer (or, for a member, a custom role id rol_…)").into()
    })
}

impl App {
    /// Runs a members change; a refusal by the rules is audited as denied (in its own
    /// transaction, the refused one having rolled back).
    pub(crate) async fn members_change(
        &self,
        proof: &SessionProof,
        org: OrgId,
        tx: Tx<palisade_store::Tenant>,
        denied: (&'static str, serde_json::Value),
        meta: &RequestMeta,
    ) -> Result<palisade_store::Results, AppError> {
        match tx.run(&self.db).await {
            Err(StoreError::Forbidden) => {
                let mut tx = Tx::tenant(proof, self.clock.now(), org);
                audit::record(&mut tx, self.audit(denied.0, meta).org(org).outcome(Outcome::Denied).details(denied.1));
                tx.run(&self.db).await?;
                Err(AppError::Forbidden)
            }
            Err(StoreError::Conflict { constraint }) if constraint == "last_owner" => {
                Err(AppError::Conflict("an organization must keep an owner".into()))
            }
            other => Ok(other?),
        }
    }

    /// Invites an address with a role (never above the inviter's own); the link is emailed.
    pub async fn invite_member(
        &self,
        proof: &SessionProof,
        org: OrgId,
        email: &str,
        role: &str,
        meta: &RequestMeta,
    ) -> Result<Invitation, AppError> {
        let (email, role) = match (Email::parse(email), parse_role(role)) {
            (Ok(e), Ok(r)) => (e, r),
            (Err(e), Ok(_)) => return Err(e.into()),
            (Ok(_), Err(r)) => return Err(r),
            (Err(e), Err(AppError::Validation(mut more))) => {
                more.insert(0, e);
                return Err(AppError::Validation(more));
            }
            (Err(e), Err(_)) => return Err(e.into()),
        };
        let now = self.clock.now();
        let id = InvitationId::new(&*self.clock, &*self.random);
        let token = mint_invitation(&*self.random, *org.as_uuid().as_bytes());
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::MembersManage);
        members::invite(
            &mut tx,
            NewInvitation { id, org, email: &email, role, token: token.hash, at: now, valid_for: INVITATION_VALID_FOR },
        );
        audit::record(
            &mut tx,
            self.audit("user.invited", meta)
                .org(org)
                .target("invitation", id.as_uuid())
                .details(json!({"role": role.as_str()})),
        );
        let pending = members::pending(&mut tx, org, now);
        let mut results =
            self.members_change(proof, org, tx, ("user.invited", json!({"role": role.as_str()})), meta).await?;
        let invitation = results.get(pending)?.into_iter().find(|i| i.id == id).ok_or(AppError::NotFound)?;
        self.send_invitation(email.as_str(), role.as_str(), token.expose());
        Ok(invitation)
    }

    pub async fn list_invitations(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<Invitation>, AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::MembersManage);
        let pending = members::pending(&mut tx, org, now);
        Ok(tx.run(&self.db).await?.get(pending)?)
    }

    pub async fn revoke_invitation(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: InvitationId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::MembersManage);
        members::revoke(&mut tx, org, id, now);
        audit::record(&mut tx, self.audit("invitation.revoked", meta).org(org).target("invitation", id.as_uuid()));
        self.members_change(proof, org, tx, ("invitation.revoked", json!({})), meta).await?;
        Ok(())
    }

    /// Joins the organization an invitation names (signed in, address verified and invited).
    pub async fn accept_invitation(
        &self,
        proof: &SessionProof,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(OrgId, Option<OrgRole>), AppError> {
        let token = token.trim();
        let org = match (token.starts_with(INVITATION_TOKEN_PREFIX) && token.len() <= 128)
            .then(|| invitation_org(token))
            .flatten()
        {
            Some(bytes) => OrgId::from_uuid(uuid::Uuid::from_bytes(bytes)),
            None => return Err(AppError::InvalidToken),
        };
        let mut tx = Tx::anonymous();
        let accepted = members::accept(&mut tx, proof, self.clock.now(), org, &hash_token(token));
        audit::record(&mut tx, self.audit("user.invitation_accepted", meta).org(org));
        let (org, role, _) = tx.run(&self.db).await?.get(accepted)?;
        Ok((org, role))
    }

    /// Changes a member's role (never above your own; only an owner touches an owner; an
    /// organization keeps an owner).
    pub async fn change_member_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        user: UserId,
        role: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if let Ok(custom) = role.parse::<palisade_core::RoleId>() {
            return self.assign_custom_role(proof, org, user, custom, meta).await;
        }
        let role = parse_role(role)?;
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::MembersManage);
        members::change_role(&mut tx, org, user, role);
        let details = json!({"role": role.as_str()});
        audit::record(
            &mut tx,
            self.audit("user.role_changed", meta).org(org).target("user", user.as_uuid()).details(details.clone()),
        );
        self.members_change(proof, org, tx, ("user.role_changed", details), meta).await?;
        Ok(())
    }

    /// Removes a member; their access to the organization ends on their next request.
    pub async fn remove_member(
        &self,
        proof: &SessionProof,
        org: OrgId,
        user: UserId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::MembersManage);
        members::remove(&mut tx, org, user);
        audit::record(&mut tx, self.audit("user.removed", meta).org(org).target("user", user.as_uuid()));
        self.members_change(proof, org, tx, ("user.removed", json!({"target": user.to_string()})), meta).await?;
        Ok(())
    }
}
