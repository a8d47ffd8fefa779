//! The audit log: list, streamed export (JSONL or CSV), chain verification, signed checkpoints.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palisade_app::{CheckpointDocument, EventRow, RawEvent, Report};
use palisade_core::{EventId, typeid_of_kind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;

fn pairs(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Who acted or what was acted on: a kind and, where there is one, its id in text form.
#[derive(Serialize)]
struct Party<'a> {
    kind: &'a str,
    id: Option<String>,
}

/// An event as the API shows it: ids in their text form, the chain position once sealed.
/// `details` is a parsed value in lists and the database's JSON text, passed through, in exports.
#[derive(Serialize)]
struct EventOut<'a, Details: Serialize + ?Sized> {
    id: String,
    seq: Option<i64>,
    occurred_at: String,
    actor: Option<Party<'a>>,
    action: &'a str,
    target: Option<Party<'a>>,
    outcome: &'a str,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    details: &'a Details,
}

fn party(kind: Option<&str>, id: Option<uuid::Uuid>) -> Option<Party<'_>> {
    kind.map(|kind| Party { kind, id: id.map(|id| typeid_of_kind(kind, id)) })
}

impl<'a> From<&'a EventRow> for EventOut<'a, Value> {
    fn from(e: &'a EventRow) -> Self {
        EventOut {
            id: EventId::from_uuid(e.id).to_string(),
            seq: e.seq,
            occurred_at: rfc3339(e.occurred_at),
            actor: party(e.actor_kind.as_deref(), e.actor_id),
            action: &e.action,
            target: party(e.target_kind.as_deref(), e.target_id),
            outcome: &e.outcome,
            ip: e.ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            request_id: e.request_id.as_deref(),
            details: &e.details,
        }
    }
}

fn event_json(e: &EventRow) -> Value {
    serde_json::to_value(EventOut::from(e)).unwrap_or(Value::Null)
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// Newest first. Each: id, seq (chain position, null until sealed, within about a second),
    /// occurred_at, actor {kind, id}, action, target {kind, id}, outcome, ip, user_agent,
    /// request_id, details.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events", tag = "audit",
    params(("org" = String, Path, description = "Organization id (org_…)"),
        ("from" = Option<String>, Query, description = "RFC 3339; events at or after"),
        ("to" = Option<String>, Query, description = "RFC 3339; events before"),
        ("actor" = Option<String>, Query, description = "User id (usr_…) or API key id (key_…)"),
        ("action" = Option<String>, Query, description = "e.g. record.created"),
        ("target" = Option<String>, Query, description = "Any id (rec_…, usr_…, inv_…)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks audit.read", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventList>> {
    let page = state.app.list_audit_events(&caller.proof, org, &pairs(query)).await?;
    Ok(Json(EventList { items: page.items.iter().map(event_json).collect(), next_cursor: page.next_cursor }))
}

const CSV_COLUMNS: [&str; 14] = [
    "id",
    "seq",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "",
];

/// One exported event; `None` when its stored details are not JSON (which the database's own
/// rendering of jsonb never produces: the export stops rather than alter an event).
fn export_event(e: &RawEvent) -> Option<EventOut<'_, RawValue>> {
    Some(EventOut {
        id: EventId::from_uuid(e.id()).to_string(),
        seq: e.seq(),
        occurred_at: rfc3339(e.occurred_at()),
        actor: party(e.actor_kind(), e.actor_id()),
        action: e.action(),
        target: party(e.target_kind(), e.target_id()),
        outcome: e.outcome(),
        ip: e.ip(),
        user_agent: e.user_agent(),
        request_id: e.request_id(),
        details: serde_json::from_str::<&RawValue>(e.details_json()).ok()?,
    })
}

fn party_kind<'a>(party: &Option<Party<'a>>) -> &'a str {
    party.as_ref().map(|p| p.kind).unwrap_or_default()
}

fn party_id<'a>(party: &'a Option<Party<'_>>) -> &'a str {
    party.as_ref().and_then(|p| p.id.as_deref()).unwrap_or_default()
}

fn csv_rows(events: &[RawEvent], header: bool) -> Option<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(events.len() * 320));
    if header {
        writer.write_record(&CSV_COLUMNS[..13]).ok()?;
    }
    for e in events {
        let event = export_event(e)?;
        writer
            .write_record([
                event.id.as_str(),
                &event.seq.map(|s| s.to_string()).unwrap_or_default(),
                &event.occurred_at,
                party_kind(&event.actor),
                party_id(&event.actor),
                event.action,
                party_kind(&event.target),
                party_id(&event.target),
                event.outcome,
                event.ip.unwrap_or_default(),
                event.user_agent.unwrap_or_default(),
                event.request_id.unwrap_or_default(),
                event.details.get(),
            ])
            .ok()?;
    }
    writer.into_inner().ok()
}

fn jsonl_rows(events: &[RawEvent]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(events.len() * 420);
    for e in events {
        serde_json::to_writer(&mut out, &export_event(e)?).ok()?;
        out.push(b'\n');
    }
    Some(out)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events/export", tag = "audit",
    params(("org" = String, Path, description = "Organization id (org_…)"),
        ("format" = String, Query, description = "jsonl or csv"),
        ("from" = Option<String>, Query, description = "Same filters as the list")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every matching event, newest first, streamed (application/x-ndjson or text/csv); recorded as export.requested"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks audit.export, or `step-up-required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`busy`: this node runs as many exports as it allows (a quarter of its connection pool); retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let pairs = pairs(query);
    let format = pairs.iter().find(|(k, _)| k == "format").map(|(_, v)| v.clone()).unwrap_or_default();
    let (content_type, csv) = match format.as_str() {
        "jsonl" => ("application/x-ndjson", false),
        "csv" => ("text/csv; charset=utf-8", true),
        _ => {
            return Err(palisade_app::AppError::InvalidQuery(vec![palisade_core::ValidationError {
                field: "format".into(),
                message: "must be jsonl or csv".into(),
            }])
            .into());
        }
    };
    let mut export = state.app.start_audit_export(&caller.proof, org, &pairs, &format, &meta).await?;
    // A producer takes batch after batch from the export's snapshot (each checks the caller
    // again, so a revoked session stops the export) and encodes each on a blocking thread while
    // the database produces the next; the client takes them through a channel of two. It stops
    // when the client goes away, or stops reading for `export_stall`: the snapshot is an
    // open transaction, which must not be held for a client that does not read.
    let (mut sender, receiver) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let stall = state.export_stall;
    tokio::spawn(async move {
        use futures::SinkExt;
        let mut header = true;
        let mut batch = export.next_batch().await;
        loop {
            let events = match batch {
                Ok(events) if events.is_empty() && !header => return,
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(error = %err, "audit export stopped");
                    let _ = sender.send(Err(std::io::Error::other("export stopped"))).await;
                    return;
                }
            };
            let (first_batch, last) = (header, events.is_empty());
            let encoding =
                tokio::task::spawn_blocking(
                    move || {
                        if csv { csv_rows(&events, first_batch) } else { jsonl_rows(&events) }
                    },
                );
            header = false;
            let next = if last { None } else { Some(export.next_batch().await) };
            let Ok(Some(bytes)) = encoding.await else {
                tracing::error!("audit export stopped: an event could not be encoded");
                let _ = sender.send(Err(std::io::Error::other("export stopped"))).await;
                return;
            };
            if !bytes.is_empty() {
                match tokio::time::timeout(stall, sender.send(Ok(bytes))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::warn!("audit export stopped: the client stopped reading");
                        return;
                    }
                }
            }
            match next {
                Some(next) => batch = next,
                None => return,
            }
        }
    });
    let mut response = Body::from_stream(receiver).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let name =
        if csv { "attachment; filename=\"audit-events.csv\"" } else { "attachment; filename=\"audit-events.jsonl\"" };
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(name));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// Chain positions recomputed.
    pub events: i64,
    /// The first position that does not verify, or null.
    pub first_bad_seq: Option<i64>,
    /// What is wrong there, in words.
    pub reason: Option<String>,
    /// Checkpoints (stored and sent) whose signature and position held.
    pub checkpoints_verified: usize,
}

impl From<Report> for VerifyResponse {
    fn from(r: Report) -> Self {
        Self {
            valid: r.verdict.valid,
            events: r.verdict.events,
            first_bad_seq: r.verdict.first_bad_seq,
            reason: r.verdict.reason,
            checkpoints_verified: r.checkpoints_verified,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-events/verify", tag = "audit",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Pending events are sealed, then the whole chain is recomputed and held against every stored checkpoint", body = VerifyResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<VerifyResponse>> {
    Ok(Json(state.app.verify_audit(&caller.proof, org, &[]).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAgainst {
    /// A checkpoint document downloaded earlier (`/audit-checkpoints/latest`).
    #[schema(value_type = Object)]
    pub checkpoint: Value,
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/audit-events/verify", tag = "audit", request_body = VerifyAgainst,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "As GET, and also held against the checkpoint you kept", body = VerifyResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a checkpoint document of this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_against(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    ApiJson(body): ApiJson<VerifyAgainst>,
) -> ApiResult<Json<VerifyResponse>> {
    let invalid = |why: String| {
        palisade_app::AppError::Validation(vec![palisade_core::ValidationError {
            field: "/checkpoint".into(),
            message: why,
        }])
    };
    let document: CheckpointDocument = serde_json::from_value(body.checkpoint).map_err(|e| invalid(e.to_string()))?;
    let anchor = document.anchor(org).map_err(invalid)?;
    Ok(Json(state.app.verify_audit(&caller.proof, org, &[anchor]).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointList {
    /// Newest first; each is a checkpoint document (docs/audit.md).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<CheckpointDocument>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-checkpoints", tag = "audit",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Signed checkpoints, newest first (at least every 1,000 events or hourly)", body = CheckpointList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkpoints(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<CheckpointList>> {
    let list = state.app.audit_checkpoints(&caller.proof, org).await?;
    Ok(Json(CheckpointList { items: list.iter().map(|c| CheckpointDocument::from_stored(org, c)).collect() }))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit-checkpoints/latest", tag = "audit",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The newest checkpoint document, as a download to keep"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No checkpoint yet (the first comes after 1,000 events or an hour)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn latest_checkpoint(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Response> {
    let list = state.app.audit_checkpoints(&caller.proof, org).await?;
    let newest = list
        .iter()
        .find(|c| c.kind == "head")
        .ok_or_else(|| Problem::new("not-found", "No checkpoint has been signed yet."))?;
    let mut response = Json(CheckpointDocument::from_stored(org, newest)).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit-checkpoint.json\""),
    );
    Ok(response)
}
