//! Plan tiers: an organization's plan sets its members' and API keys' request budgets.

/// The plan an instance administrator gives an organization. New organizations are `Standard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    #[default]
    Standard,
    Professional,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Standard, Plan::Professional, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Standard => "standard",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(text: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip_and_unknown_text_is_none() {
        for plan in Plan::ALL {
            assert_eq!(Plan::parse(plan.as_str()), Some(plan));
        }
        assert_eq!(Plan::parse("platinum"), None);
        assert_eq!(Plan::default(), Plan::Standard);
    }
}
