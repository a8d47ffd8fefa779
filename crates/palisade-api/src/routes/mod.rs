//! HTTP handlers, one module per area. Each handler: extract (who, which org, body) → call one
//! use case → shape the response.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod collections;
pub mod keys;
pub mod me;
pub mod members;
pub mod org_deletion;
pub mod orgs;
pub mod records;
pub mod roles;
pub mod secrets;
pub mod system;
pub mod webauthn;

use serde::Serialize;
use time::OffsetDateTime;

/// RFC 3339 text for timestamps in responses.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A list response: `{"items": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}
