//! Custom roles (create, change, delete, give to a member) and the access review. Managing
//! roles needs `roles.manage`, and nobody grants a permission they do not hold.

use palisade_core::{OrgId, OrgRole, Permission, RoleId, SessionProof, UserId, ValidationError};
use palisade_store::repo::audit::{self, RequestMeta};
use palisade_store::repo::roles::{self, CustomRole, ReviewRow, RoleDraft};
use palisade_store::{StoreError, Tenant, Tx};
use serde_json::json;

use crate::{App, AppError};

/// A role as a request describes it.
pub struct RoleInput {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

struct CheckedRole {
    name: String,
    description: String,
    permissions: Vec<String>,
}

fn check(input: RoleInput) -> Result<CheckedRole, AppError> {
    let mut errors = Vec::new();
    let name_ok = input.name.len() <= 40
        && input.name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && input.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        errors.push(ValidationError::new(
            "name",
            "must be a lower-case letter, then up to 39 lower-case letters, digits or _",
        ));
    } else if OrgRole::from_db(&input.name).is_some() || input.name == "custom" {
        errors.push(ValidationError::new("name", "is the name of a built-in role"));
    }
    if input.description.chars().count() > 500 || input.description.chars().any(char::is_control) {
        errors.push(ValidationError::new("description", "must be at most 500 characters, without control characters"));
    }
    let mut permissions = Vec::new();
    for (i, name) in input.permissions.iter().enumerate() {
        match Permission::parse(name) {
            Some(p) if !permissions.contains(&p.as_str().to_owned()) => permissions.push(p.as_str().to_owned()),
            Some(_) => {}
            None => {
                errors.push(ValidationError::new(&format!("permissions/{i}"), "is not a permission (see GET …/roles)"))
            }
        }
    }
    permissions.sort();
    if errors.is_empty() {
        Ok(CheckedRole { name: input.name, description: input.description, permissions })
    } else {
        Err(AppError::Validation(errors))
    }
}

/// A role name that is taken answers 409; a refusal by the rules is 403.
fn role_conflict(err: StoreError) -> AppError {
    match err {
        StoreError::Conflict { .. } => {
            AppError::Conflict("a role with that name exists, or members still hold it".into())
        }
        other => other.into(),
    }
}

impl App {
    /// Built-in roles with their permissions, and the organization's custom roles.
    pub async fn list_all_roles(
        &self,
        proof: &SessionProof,
        org: OrgId,
    ) -> Result<(Vec<(OrgRole, Vec<Permission>)>, Vec<CustomRole>), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        let custom = roles::list(&mut tx, org);
        let custom = tx.run(&self.db).await?.get(custom)?;
        Ok((OrgRole::ALL.into_iter().map(|role| (role, role.permissions())).collect(), custom))
    }

    pub async fn create_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        input: RoleInput,
        meta: &RequestMeta,
    ) -> Result<CustomRole, AppError> {
        let id = RoleId::new(&*self.clock, &*self.random);
        self.write_role(proof, org, id, input, (roles::create, "role.created"), meta).await
    }

    pub async fn update_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: RoleId,
        input: RoleInput,
        meta: &RequestMeta,
    ) -> Result<CustomRole, AppError> {
        self.write_role(proof, org, id, input, (roles::update, "role.updated"), meta).await
    }

    /// Creates or changes a custom role (`write` is the repository step, `action` its event) and
    /// reads it back, in one transaction that needs `roles.manage`.
    async fn write_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: RoleId,
        input: RoleInput,
        (write, action): (fn(&mut Tx<Tenant>, RoleDraft<'_>), &'static str),
        meta: &RequestMeta,
    ) -> Result<CustomRole, AppError> {
        let role = check(input)?;
        let now = self.clock.now();
        let mut tx = Tx::tenant(proof, now, org);
        tx.require(Permission::RolesManage);
        write(
            &mut tx,
            RoleDraft {
                org,
                id,
                name: &role.name,
                description: &role.description,
                permissions: &role.permissions,
                at: now,
            },
        );
        audit::record(
            &mut tx,
            self.audit(action, meta)
                .org(org)
                .target("role", id.as_uuid())
                .details(json!({"name": role.name, "permissions": role.permissions})),
        );
        let written = roles::get(&mut tx, org, id);
        Ok(tx.run(&self.db).await.map_err(role_conflict)?.get(written)?)
    }

    pub async fn delete_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        id: RoleId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::RolesManage);
        roles::delete(&mut tx, org, id);
        audit::record(&mut tx, self.audit("role.deleted", meta).org(org).target("role", id.as_uuid()));
        tx.run(&self.db).await.map_err(role_conflict)?;
        Ok(())
    }

    /// Gives a member a custom role (`rol_…`): needs members.manage and every permission of the role.
    pub(crate) async fn assign_custom_role(
        &self,
        proof: &SessionProof,
        org: OrgId,
        user: UserId,
        role: RoleId,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::MembersManage);
        roles::assign(&mut tx, org, user, role);
        let details = json!({"role": role.to_string()});
        audit::record(
            &mut tx,
            self.audit("user.role_changed", meta).org(org).target("user", user.as_uuid()).details(details.clone()),
        );
        self.members_change(proof, org, tx, ("user.role_changed", details), meta).await?;
        Ok(())
    }

    /// Every member with role, permissions, second factor and last activity (Z4).
    pub async fn access_review(&self, proof: &SessionProof, org: OrgId) -> Result<Vec<ReviewRow>, AppError> {
        let mut tx = Tx::tenant(proof, self.clock.now(), org);
        tx.require(Permission::MembersManage);
        let review = roles::access_review(&mut tx);
        Ok(tx.run(&self.db).await?.get(review)?)
    }
}
