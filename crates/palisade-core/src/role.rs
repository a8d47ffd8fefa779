//! Built-in organization roles, the permissions they grant, and the one function that decides.
//! The matrix here is the single source of truth: every migrate writes it into
//! `palisade.role_permissions`, where the database's `require_permission` and the records policy
//! read it; `GET /orgs/{org}/roles` serves it, and docs/permissions.md is tested against it.

use serde::{Deserialize, Serialize};

/// The built-in roles, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    Owner,
    Admin,
    Manager,
    Member,
    Contractor,
    Viewer,
}

/// What a role may do, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "org.read")]
    OrgRead,
    #[serde(rename = "org.settings")]
    OrgSettings,
    #[serde(rename = "security.settings")]
    SecuritySettings,
    #[serde(rename = "members.read")]
    MembersRead,
    #[serde(rename = "members.manage")]
    MembersManage,
    #[serde(rename = "roles.manage")]
    RolesManage,
    #[serde(rename = "collections.read")]
    CollectionsRead,
    #[serde(rename = "collections.manage")]
    CollectionsManage,
    #[serde(rename = "records.read_all")]
    RecordsReadAll,
    #[serde(rename = "records.read_own")]
    RecordsReadOwn,
    #[serde(rename = "records.create")]
    RecordsCreate,
    #[serde(rename = "records.update")]
    RecordsUpdate,
    #[serde(rename = "records.delete")]
    RecordsDelete,
    #[serde(rename = "records.sensitive_read")]
    RecordsSensitiveRead,
    #[serde(rename = "audit.read")]
    AuditRead,
    #[serde(rename = "audit.export")]
    AuditExport,
    #[serde(rename = "api_keys.manage")]
    ApiKeysManage,
    /// Write, replace and delete the organization's secrets and list their names (values are
    /// never readable through the API).
    #[serde(rename = "secrets.manage")]
    SecretsManage,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::OrgRead,
        Permission::OrgSettings,
        Permission::SecuritySettings,
        Permission::MembersRead,
        Permission::MembersManage,
        Permission::RolesManage,
        Permission::CollectionsRead,
        Permission::CollectionsManage,
        Permission::RecordsReadAll,
        Permission::RecordsReadOwn,
        Permission::RecordsCreate,
        Permission::RecordsUpdate,
        Permission::RecordsDelete,
        Permission::RecordsSensitiveRead,
        Permission::AuditRead,
        Permission::AuditExport,
        Permission::ApiKeysManage,
        Permission::SecretsManage,
    ];

    /// The stable name, as in the API and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgRead => "org.read",
            Permission::OrgSettings => "org.settings",
            Permission::SecuritySettings => "security.settings",
            Permission::MembersRead => "members.read",
            Permission::MembersManage => "members.manage",
            Permission::RolesManage => "roles.manage",
            Permission::CollectionsRead => "collections.read",
            Permission::CollectionsManage => "collections.manage",
            Permission::RecordsReadAll => "records.read_all",
            Permission::RecordsReadOwn => "records.read_own",
            Permission::RecordsCreate => "records.create",
            Permission::RecordsUpdate => "records.update",
            Permission::RecordsDelete => "records.delete",
            Permission::RecordsSensitiveRead => "records.sensitive_read",
            Permission::AuditRead => "audit.read",
            Permission::AuditExport => "audit.export",
            Permission::ApiKeysManage => "api_keys.manage",
            Permission::SecretsManage => "secrets.manage",
        }
    }

    /// Parses the stable name; unknown names are `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The built-in roles that hold this permission.
    pub fn roles(self) -> Vec<&'static str> {
        OrgRole::ALL.into_iter().filter(|r| r.can(self)).map(OrgRole::as_str).collect()
    }
}

impl OrgRole {
    pub const ALL: [OrgRole; 6] =
        [OrgRole::Owner, OrgRole::Admin, OrgRole::Manager, OrgRole::Member, OrgRole::Contractor, OrgRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Manager => "manager",
            OrgRole::Member => "member",
            OrgRole::Contractor => "contractor",
            OrgRole::Viewer => "viewer",
        }
    }

    /// Parses the stored form. Unknown text is `None`, which callers treat as "no access".
    pub fn from_db(text: &str) -> Option<Self> {
        OrgRole::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The permission matrix. Unknown = denied: a permission not listed for a role is refused.
    pub fn can(self, permission: Permission) -> bool {
        use OrgRole::*;
        use Permission::*;
        match permission {
            OrgRead | MembersRead | CollectionsRead | RecordsReadOwn => true,
            OrgSettings | SecuritySettings | MembersManage | RolesManage | ApiKeysManage | SecretsManage
            | AuditExport => {
                matches!(self, Owner | Admin)
            }
            CollectionsManage | RecordsDelete | RecordsSensitiveRead | AuditRead => {
                matches!(self, Owner | Admin | Manager)
            }
            RecordsReadAll => matches!(self, Owner | Admin | Manager | Member | Viewer),
            RecordsCreate | RecordsUpdate => matches!(self, Owner | Admin | Manager | Member | Contractor),
        }
    }

    /// Every permission this role holds, in the order of `Permission::ALL`.
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| self.can(*p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_holds_its_promises() {
        use OrgRole::*;
        use Permission::*;
        // Settings and security belong to owners and admins only.
        assert_eq!(OrgSettings.roles(), ["owner", "admin"]);
        assert_eq!(MembersManage.roles(), ["owner", "admin"]);
        assert_eq!(SecretsManage.roles(), ["owner", "admin"]);
        // Least privilege: contractors see only their own records, and never sensitive fields.
        assert!(!Contractor.can(RecordsReadAll) && Contractor.can(RecordsReadOwn));
        assert!(!Contractor.can(RecordsSensitiveRead));
        // Viewers read but never write.
        assert!(Viewer.can(RecordsReadAll) && !Viewer.can(RecordsCreate) && !Viewer.can(RecordsUpdate));
        // Every role holds each permission an owner holds, or less; owners hold everything.
        assert_eq!(Owner.permissions(), Permission::ALL);
        for role in OrgRole::ALL {
            assert_eq!(OrgRole::from_db(role.as_str()), Some(role));
            assert!(role.permissions().iter().all(|p| Owner.can(*p)));
        }
        assert_eq!(OrgRole::from_db("superuser"), None);
    }
}
