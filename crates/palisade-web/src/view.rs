//! What the team, audit and security pages share: times as people read them, the page that asks
//! before something that cannot be undone, and field errors of list-valued fields.

use askama::Template;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::page::{FieldErrors, Layout, WebError};

/// `2026-03-01 14:05 UTC`: minutes are enough on a page; the API and exports carry exact times.
pub fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", at.year(), u8::from(at.month()), at.day(), at.hour(), at.minute())
}

/// `2026-03-01 14:05:09 UTC`: the audit log tells events seconds apart.
pub fn when_seconds(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}:{:02} UTC", at.date(), at.hour(), at.minute(), at.second())
}

/// As `when`, or "never".
pub fn when_or_never(at: Option<OffsetDateTime>) -> String {
    at.map(when).unwrap_or_else(|| "never".to_owned())
}

/// The machine-readable time for a `<time datetime>` attribute.
pub fn iso(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The second segment of a `/orgs/{org}/<kind>/{id}/…` path as a typed id; an id that does not
/// parse is "not found", like one from another organization.
pub fn path_id<T: std::str::FromStr>(raw: &str) -> Result<T, WebError> {
    raw.parse().map_err(|_| WebError::NotFound)
}

/// Every value of a repeated form field (checkboxes).
pub fn all_values(fields: &crate::session::Fields, name: &str) -> Vec<String> {
    fields.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

/// The app names an entry of a list field by its index (`permissions/2`); the form shows the
/// error once, next to the whole list.
pub fn fold_list_errors(mut errors: FieldErrors, lists: &[&str]) -> FieldErrors {
    for (field, _) in errors.0.iter_mut() {
        if let Some(list) = lists.iter().find(|l| field.starts_with(&format!("{l}."))) {
            *field = (*list).to_owned();
        }
    }
    errors
}

/// "Are you sure?" before a removal, deletion or revocation: a GET shows it, its form posts
/// the change. Without JavaScript there is no dialog, so this is a page.
#[derive(Template)]
#[template(path = "confirm_action.html")]
pub struct ConfirmPage {
    pub l: Layout,
    pub heading: String,
    pub explain: String,
    pub action: String,
    pub button: &'static str,
    pub cancel: String,
}
