//! Built-in organization roles and the decisions that depend on them.

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

impl OrgRole {
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
        Some(match text {
            "owner" => OrgRole::Owner,
            "admin" => OrgRole::Admin,
            "manager" => OrgRole::Manager,
            "member" => OrgRole::Member,
            "contractor" => OrgRole::Contractor,
            "viewer" => OrgRole::Viewer,
            _ => return None,
        })
    }

    /// May change the organization's settings (name, and later policies).
    pub fn can_update_org(self) -> bool {
        matches!(self, OrgRole::Owner | OrgRole::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_and_admin_update_org_settings() {
        use OrgRole::*;
        for role in [Owner, Admin, Manager, Member, Contractor, Viewer] {
            assert_eq!(role.can_update_org(), matches!(role, Owner | Admin));
            assert_eq!(OrgRole::from_db(role.as_str()), Some(role));
        }
        assert_eq!(OrgRole::from_db("superuser"), None);
    }
}
