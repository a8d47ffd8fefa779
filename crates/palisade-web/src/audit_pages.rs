//! The audit log: the organization's events newest first with the API's filters, older pages by
//! the API's cursor, each event's details, whether the hash chain verifies, and links to the
//! API's exports and latest signed checkpoint.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use palisade_api::ApiState;
use palisade_app::{AppError, EventRow};
use palisade_core::{EventId, OrgId, typeid_of_kind};

use crate::page::{FieldErrors, Layout, OrgParam, WebError, render};
use crate::session::Session;
use crate::view::{iso, when_seconds};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/orgs/{org}/audit", get(audit)).route("/orgs/{org}/audit/chain", get(chain_status))
}

/// The filters as the form shows them (what was typed, not what was sent).
#[derive(Default)]
struct Filters {
    action: String,
    actor: String,
    target: String,
    from: String,
    to: String,
    /// Page size: not in the form, but kept by its links (and a hidden field) once given.
    limit: String,
}

impl Filters {
    fn is_empty(&self) -> bool {
        [&self.action, &self.actor, &self.target, &self.from, &self.to].iter().all(|v| v.is_empty())
    }
}

/// Who acted or what was acted on: a readable label and the id.
struct Party {
    label: String,
    id: String,
}

struct EventLine {
    id: String,
    seq: String,
    at: String,
    at_iso: String,
    action: String,
    actor: Option<Party>,
    target: Option<Party>,
    outcome: String,
    success: bool,
    ip: String,
    user_agent: String,
    request_id: String,
    details: String,
}

/// The verdict of the hash chain, for the badge.
struct Chain {
    valid: bool,
    events: i64,
    first_bad_seq: Option<i64>,
    reason: String,
    checkpoints: usize,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    filters: Filters,
    errors: FieldErrors,
    events: Vec<EventLine>,
    /// Verified in the page itself only on request (`?verify=1`, the path without JavaScript);
    /// otherwise htmx fetches the badge from `/audit/chain` once the page is shown.
    chain: Option<Chain>,
    /// The newest page is shown when there is no cursor.
    paged: bool,
    older: Option<String>,
    newest: String,
    csv: String,
    jsonl: String,
    checkpoint: String,
}

/// `2026-03-01` or `2026-03-01T10:00` (what date and time inputs send) as the RFC 3339 time the
/// API expects, in UTC; anything else goes as typed, for the API to judge.
fn api_time(text: &str) -> String {
    let is_date = |d: &str| {
        d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
    };
    match text.len() {
        10 if is_date(text) => format!("{text}T00:00:00Z"),
        16 if is_date(&text[..10]) && text.as_bytes()[10] == b'T' => format!("{text}:00Z"),
        _ => text.to_owned(),
    }
}

/// The page's query, split into the API's query pairs (what `list_audit_events` takes, empty
/// fields left out) and the filters to show again. Other parameters (a notice) are ignored.
fn read_query(raw: Option<&str>) -> (Vec<(String, String)>, Filters, bool) {
    let mut pairs = Vec::new();
    let mut filters = Filters::default();
    let mut paged = false;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.trim().to_owned();
        if value.is_empty() {
            continue;
        }
        let (shown, sent) = match key.as_ref() {
            "action" => (&mut filters.action, value.clone()),
            "actor" => (&mut filters.actor, value.clone()),
            "target" => (&mut filters.target, value.clone()),
            "from" => (&mut filters.from, api_time(&value)),
            "to" => (&mut filters.to, api_time(&value)),
            "limit" => (&mut filters.limit, value.clone()),
            "cursor" => {
                paged = true;
                pairs.push(("cursor".to_owned(), value));
                continue;
            }
            _ => continue,
        };
        *shown = value;
        pairs.retain(|(k, _)| k != key.as_ref());
        pairs.push((key.into_owned(), sent));
    }
    (pairs, filters, paged)
}

/// A query string of the filters (never the cursor), after `first` pairs.
fn query_with(first: &[(&str, &str)], pairs: &[(String, String)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in first {
        query.append_pair(k, v);
    }
    for (k, v) in pairs.iter().filter(|(k, _)| k != "cursor") {
        query.append_pair(k, v);
    }
    query.finish()
}

/// `typed_id` gives the id's text form for the kind (`usr_…`); users are named while they are
/// members (a name is not kept in the event: it may change).
fn party(
    kind: Option<&str>,
    typed_id: impl FnOnce(&str) -> Option<String>,
    names: &HashMap<String, String>,
) -> Option<Party> {
    let kind = kind?;
    let id = typed_id(kind).unwrap_or_default();
    let label = match kind {
        "user" => names.get(&id).cloned().unwrap_or_else(|| "user".to_owned()),
        "api_key" => "API key".to_owned(),
        other => other.replace('_', " "),
    };
    Some(Party { label, id })
}

fn event_line(e: &EventRow, names: &HashMap<String, String>) -> EventLine {
    EventLine {
        id: EventId::from_uuid(e.id).to_string(),
        seq: e.seq.map(|s| s.to_string()).unwrap_or_else(|| "not sealed yet".to_owned()),
        at: when_seconds(e.occurred_at),
        at_iso: iso(e.occurred_at),
        action: e.action.clone(),
        actor: party(e.actor_kind.as_deref(), |k| e.actor_id.map(|id| typeid_of_kind(k, id)), names),
        target: party(e.target_kind.as_deref(), |k| e.target_id.map(|id| typeid_of_kind(k, id)), names),
        success: e.outcome == "success",
        outcome: e.outcome.clone(),
        ip: e.ip.clone().unwrap_or_default(),
        user_agent: e.user_agent.clone().unwrap_or_default(),
        request_id: e.request_id.clone().unwrap_or_default(),
        details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
    }
}

/// Recomputes the organization's chain and holds it against its signed checkpoints.
async fn verify(state: &ApiState, session: &Session, org: palisade_core::OrgId) -> Result<Chain, WebError> {
    let report = state.app.verify_audit(&session.proof, org, &[]).await?;
    Ok(Chain {
        valid: report.verdict.valid,
        events: report.verdict.events,
        first_bad_seq: report.verdict.first_bad_seq,
        reason: report.verdict.reason.unwrap_or_default(),
        checkpoints: report.checkpoints_verified,
    })
}

#[derive(Template)]
#[template(path = "audit_chain.html")]
struct ChainBadge {
    chain: Chain,
}

/// The badge alone, for the audit page to fetch after it is shown (audit.read, like the list).
async fn chain_status(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
) -> Result<Response, WebError> {
    let chain = verify(&state, &session, org).await?;
    Ok(render(StatusCode::OK, &ChainBadge { chain }))
}

async fn audit(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Audit log", "audit").await?;
    let (pairs, filters, paged) = read_query(raw.as_deref());
    // Verifying recomputes the whole chain (seconds for millions of events), so the list does
    // not wait for it unless asked; it also seals pending events, so asking first shows their
    // chain positions.
    let verify_now = raw.as_deref().is_some_and(|q| q.split('&').any(|p| p == "verify=1"));
    let chain = if verify_now { Some(verify(&state, &session, org).await?) } else { None };
    let (events, next_cursor, errors, status) = match state.app.list_audit_events(&session.proof, org, &pairs).await {
        Ok(page) => (page.items, page.next_cursor, FieldErrors::default(), StatusCode::OK),
        Err(AppError::InvalidQuery(errors)) => {
            (Vec::new(), None, FieldErrors::from_validation(errors), StatusCode::BAD_REQUEST)
        }
        Err(err) => return Err(err.into()),
    };
    let names: HashMap<String, String> = state
        .app
        .list_members(&session.proof, org)
        .await?
        .into_iter()
        .map(|m| (m.user_id.to_string(), m.name))
        .collect();
    let page = AuditPage {
        events: events.iter().map(|e| event_line(e, &names)).collect(),
        older: next_cursor.map(|c| format!("/orgs/{org}/audit?{}", query_with(&[("cursor", &c)], &pairs))),
        newest: newest_link(org, &pairs),
        csv: export_link(org, "csv", &pairs),
        jsonl: export_link(org, "jsonl", &pairs),
        checkpoint: format!("/api/v1/orgs/{org}/audit-checkpoints/latest"),
        l,
        filters,
        errors,
        chain,
        paged,
    };
    Ok(render(status, &page))
}

fn newest_link(org: OrgId, pairs: &[(String, String)]) -> String {
    let query = query_with(&[], pairs);
    if query.is_empty() { format!("/orgs/{org}/audit") } else { format!("/orgs/{org}/audit?{query}") }
}

/// The API's export of the events these filters select (the session cookie authenticates it).
fn export_link(org: OrgId, format: &str, pairs: &[(String, String)]) -> String {
    format!("/api/v1/orgs/{org}/audit-events/export?{}", query_with(&[("format", format)], pairs))
}
