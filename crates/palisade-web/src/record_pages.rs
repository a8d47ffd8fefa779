//! A collection's records: the table (filters, sort and pages through the API's own query
//! parameters), one record with its sensitive fields behind Reveal, and deleting one.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, Member, RecordView};
use palisade_core::{OrgId, RecordId, SessionProof};
use serde_json::Value;
use time::OffsetDateTime;

use crate::collection_pages::{CollectionParam, RecordParam};
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::record_form::{Choice, FieldSpec, add_error, fields_of};
use crate::session::{Session, SessionForm};

/// Columns of the table: the first properties of the schema.
const COLUMNS: usize = 6;
/// Longest cell text before it is cut.
const CELL_CHARS: usize = 80;
/// What a sensitive value looks like wherever it is not revealed.
const HIDDEN: &str = "•••• hidden";

/// The filter operators of the list API, as the form offers them.
const OPERATORS: [(&str, &str); 7] = [
    ("eq", "is"),
    ("ne", "is not"),
    ("gt", "greater than"),
    ("gte", "at least"),
    ("lt", "less than"),
    ("lte", "at most"),
    ("in", "one of (comma-separated)"),
];

fn when(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// A value as one line of text.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(text: String) -> String {
    match text.char_indices().nth(CELL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The query-string pairs of the console's simple filter form.
struct FilterForm {
    field: String,
    op: String,
    value: String,
    sort: String,
    desc: bool,
    /// Passed through as the API's `limit` when a link carries it (the page size; default 50).
    limit: String,
    cursor: String,
}

impl FilterForm {
    fn read(query: Option<&str>) -> (FilterForm, Option<String>) {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
        let notice = Some(get("notice")).filter(|n| !n.is_empty());
        let form = FilterForm {
            field: get("field"),
            op: Some(get("op")).filter(|o| !o.is_empty()).unwrap_or_else(|| "eq".into()),
            value: get("value"),
            sort: get("sort"),
            desc: get("dir") == "desc",
            limit: get("limit"),
            cursor: get("cursor"),
        };
        (form, notice)
    }

    /// The list API's parameters: `filter[field]` (or `filter[field][op]`), `sort` (`-` for
    /// descending) and `cursor`. A filter without a value is no filter.
    fn api_pairs(&self) -> Result<Vec<(String, String)>, (String, String)> {
        let mut pairs = Vec::new();
        match (self.field.is_empty(), self.value.trim().is_empty()) {
            (false, false) if self.op == "eq" => pairs.push((format!("filter[{}]", self.field), self.value.clone())),
            (false, false) => pairs.push((format!("filter[{}][{}]", self.field, self.op), self.value.clone())),
            (true, false) => return Err(("value".into(), "Choose the field to filter on.".into())),
            _ => {}
        }
        if !self.sort.is_empty() {
            pairs.push(("sort".into(), format!("{}{}", if self.desc { "-" } else { "" }, self.sort)));
        }
        if !self.limit.is_empty() {
            pairs.push(("limit".into(), self.limit.clone()));
        }
        if !self.cursor.is_empty() {
            pairs.push(("cursor".into(), self.cursor.clone()));
        }
        Ok(pairs)
    }

    /// This listing's URL, on the page after `cursor` (or the first page).
    fn href(&self, base: &str, cursor: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("field", &self.field), ("op", &self.op), ("value", &self.value), ("sort", &self.sort)] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if self.desc {
            query.append_pair("dir", "desc");
        }
        if !self.limit.is_empty() {
            query.append_pair("limit", &self.limit);
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        let query = query.finish();
        if query.is_empty() { base.to_owned() } else { format!("{base}?{query}") }
    }
}

/// A cell of the table: its text, or a hidden sensitive value.
struct Cell {
    text: String,
    hidden: bool,
}

struct Row {
    id: String,
    href: String,
    /// The first column's text, or the record id when that is empty or hidden.
    title: String,
    cells: Vec<Cell>,
    assignees: usize,
    updated: String,
}

#[derive(Template)]
#[template(path = "records.html")]
struct RecordsPage {
    l: Layout,
    collection: String,
    base: String,
    columns: Vec<FieldSpec>,
    rows: Vec<Row>,
    filter_fields: Vec<Choice>,
    sort_fields: Vec<Choice>,
    operators: Vec<Choice>,
    value: String,
    desc: bool,
    filtered: bool,
    errors: FieldErrors,
    next: Option<String>,
    first: Option<String>,
}

fn choices<'a>(specs: impl Iterator<Item = &'a FieldSpec>, selected: &str) -> Vec<Choice> {
    specs.map(|s| Choice { selected: s.name == selected, value: s.name.clone(), label: s.label.clone() }).collect()
}

/// The table shows sensitive fields as hidden to every role: it lists with
/// `list_records_concealed`, which opens nothing (and so audits no read); revealing happens on
/// the record page only.
fn row(view: RecordView, columns: &[FieldSpec], base: &str) -> Row {
    let record = view.record;
    let cells: Vec<Cell> = columns
        .iter()
        .map(|c| {
            if c.sensitive || view.masked.contains(&c.name) {
                Cell { text: HIDDEN.into(), hidden: true }
            } else {
                Cell { text: cut(record.data.get(&c.name).map(plain).unwrap_or_default()), hidden: false }
            }
        })
        .collect();
    let id = record.id.to_string();
    let title = cells.first().filter(|c| !c.hidden && !c.text.trim().is_empty()).map_or(id.clone(), |c| c.text.clone());
    Row {
        href: format!("{base}/records/{id}"),
        title,
        cells: cells.into_iter().skip(1).collect(),
        assignees: record.assignees.len(),
        updated: when(record.updated_at),
        id,
    }
}

pub async fn table(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let (form, notice) = FilterForm::read(query.as_deref());
    let l = Layout::signed_in(&state, &session, Some(org), name.clone(), "collections")
        .await?
        .with_notice(notice.as_deref());
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    let specs = fields_of(&collection.schema);
    let base = format!("/orgs/{org}/collections/{name}");
    let mut errors = Vec::new();
    let mut page = None;
    match form.api_pairs() {
        Err((field, message)) => errors.push((field, message)),
        Ok(pairs) => match state.app.list_records_concealed(&session.proof, org, &name, &pairs).await {
            Ok(found) => page = Some(found),
            // Each refused parameter is shown at the control that made it.
            Err(AppError::InvalidQuery(refused)) => {
                for e in refused {
                    let at = match e.field.as_str() {
                        f if f.starts_with("filter") => "value",
                        "sort" => "sort",
                        _ => "query",
                    };
                    add_error(&mut errors, at, &e.message);
                }
            }
            Err(err) => return Err(err.into()),
        },
    }
    let columns: Vec<FieldSpec> = specs.iter().take(COLUMNS).cloned().collect();
    let (rows, next) = match page {
        Some(found) => (
            found.items.into_iter().map(|view| row(view, &columns, &base)).collect(),
            found.next_cursor.map(|c| form.href(&base, Some(&c))),
        ),
        None => (Vec::new(), None),
    };
    let page = RecordsPage {
        filter_fields: choices(specs.iter().filter(|s| s.filterable()), &form.field),
        sort_fields: choices(specs.iter().filter(|s| s.filterable()), &form.sort),
        operators: OPERATORS
            .iter()
            .map(|(op, label)| Choice { value: (*op).into(), label: (*label).into(), selected: *op == form.op })
            .collect(),
        value: form.value.clone(),
        desc: form.desc,
        filtered: !form.value.trim().is_empty(),
        first: (!form.cursor.is_empty()).then(|| form.href(&base, None)),
        next,
        errors: FieldErrors(errors),
        collection: name,
        base,
        columns,
        rows,
        l,
    };
    let status = if page.errors.0.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok(render(status, &page))
}

/// One field on the record page.
struct Shown {
    label: String,
    name: String,
    /// "text", "json", "absent", "masked" (the role cannot see it) or "concealed" (Reveal shows it).
    state: &'static str,
    text: String,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    l: Layout,
    collection: String,
    base: String,
    id: String,
    fields: Vec<Shown>,
    can_reveal: bool,
    revealed: bool,
    version: i32,
    created_by: String,
    created: String,
    updated: String,
    assignees: Vec<String>,
}

fn member_name(members: &[Member], id: impl std::fmt::Display) -> String {
    let id = id.to_string();
    members.iter().find(|m| m.user_id.to_string() == id).map_or(id, |m| format!("{} ({})", m.name, m.email))
}

/// Reads one record for display. Without `reveal`, sensitive values stay sealed (nothing is
/// decrypted and no sensitive-read event is written; `concealed` names what the caller could
/// reveal). With it, `get_record` opens them for a permitted role and audits the clear read, as
/// the API does; other roles get them masked and `record.sensitive_denied` is written.
async fn read(
    state: &ApiState,
    proof: &SessionProof,
    org: OrgId,
    name: &str,
    id: RecordId,
    reveal: Option<&palisade_app::RequestMeta>,
) -> Result<(RecordView, Vec<String>), WebError> {
    Ok(match reveal {
        Some(meta) => (state.app.get_record(proof, org, name, id, meta).await?, Vec::new()),
        None => {
            let concealed = state.app.get_record_concealed(proof, org, name, id).await?;
            (concealed.view, concealed.concealed)
        }
    })
}

/// The record page; sensitive values stay sealed (see `reveal`).
pub async fn detail(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).map(|(k, v)| (k.into(), v.into())).collect();
    let notice = pairs.iter().find(|(k, _)| k == "notice").map(|(_, v)| v.as_str());
    record_page(&state, &session, (org, name, id), notice, None).await
}

/// "Reveal": a POST with the page's CSRF token, because it decrypts and writes an audit event
/// (`record.sensitive_read`) — a link from another site must not be able to make a user's
/// browser do that. Answers with the page itself, not a redirect, so nothing stays revealed.
pub async fn reveal(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    record_page(&state, &form.session, (org, name, id), None, Some(&meta)).await
}

async fn record_page(
    state: &ApiState,
    session: &Session,
    (org, name, id): (OrgId, String, RecordId),
    notice: Option<&str>,
    reveal: Option<&palisade_app::RequestMeta>,
) -> Result<Response, WebError> {
    let revealed = reveal.is_some();
    let l = Layout::signed_in(state, session, Some(org), format!("Record · {name}"), "collections")
        .await?
        .with_notice(notice);
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    let (view, concealed) = read(state, &session.proof, org, &name, id, reveal).await?;
    let members = state.app.list_members(&session.proof, org).await?;
    let specs = fields_of(&collection.schema);
    let data = view.record.data.as_object().cloned().unwrap_or_default();
    let mut can_reveal = false;
    let mut fields: Vec<Shown> = specs
        .iter()
        .map(|s| {
            let value = data.get(&s.name);
            let (state, text) = if view.masked.contains(&s.name) {
                ("masked", "hidden — your role cannot see it".to_owned())
            } else if concealed.contains(&s.name) {
                can_reveal = true;
                ("concealed", format!("{HIDDEN} — press Reveal to show it"))
            } else {
                shown_value(value)
            };
            Shown { label: s.label.clone(), name: s.name.clone(), state, text }
        })
        .collect();
    // Properties the schema does not declare (it may allow them) are shown after the rest.
    for (key, value) in data.iter().filter(|(k, _)| !specs.iter().any(|s| &s.name == *k)) {
        let (state, text) = shown_value(Some(value));
        fields.push(Shown { label: key.clone(), name: key.clone(), state, text });
    }
    let record = view.record;
    let page = RecordPage {
        base: format!("/orgs/{org}/collections/{name}"),
        collection: name,
        id: record.id.to_string(),
        fields,
        can_reveal,
        revealed: revealed && specs.iter().any(|s| s.sensitive && data.contains_key(&s.name)),
        version: record.version,
        created_by: member_name(&members, record.created_by),
        created: when(record.created_at),
        updated: when(record.updated_at),
        assignees: record.assignees.iter().map(|a| member_name(&members, a)).collect(),
        l,
    };
    Ok(ok(&page))
}

fn shown_value(value: Option<&Value>) -> (&'static str, String) {
    match value {
        None | Some(Value::Null) => ("absent", "—".to_owned()),
        Some(v @ (Value::Object(_) | Value::Array(_))) => ("json", serde_json::to_string_pretty(v).unwrap_or_default()),
        Some(v) => ("text", plain(v)),
    }
}

#[derive(Template)]
#[template(path = "record_delete.html")]
struct DeletePage {
    l: Layout,
    collection: String,
    base: String,
    id: String,
    summary: String,
    version: i32,
    stale: bool,
}

async fn delete_page(
    state: &ApiState,
    session: &Session,
    (org, name, id): (OrgId, String, RecordId),
    stale: bool,
) -> Result<DeletePage, WebError> {
    let l = Layout::signed_in(state, session, Some(org), format!("Delete record · {name}"), "collections").await?;
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    // Read so that an unknown record is "not found" here already, and to name the version the
    // deletion is conditional on.
    let (view, _) = read(state, &session.proof, org, &name, id, None).await?;
    let summary = fields_of(&collection.schema)
        .iter()
        .filter(|s| !s.sensitive)
        .find_map(|s| view.record.data.get(&s.name).map(plain).filter(|t| !t.trim().is_empty()))
        .map(cut)
        .unwrap_or_default();
    Ok(DeletePage {
        l,
        base: format!("/orgs/{org}/collections/{name}"),
        collection: name,
        id: id.to_string(),
        summary,
        version: view.record.version,
        stale,
    })
}

pub async fn delete_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
) -> Result<Response, WebError> {
    Ok(ok(&delete_page(&state, &session, (org, name, id), false).await?))
}

pub async fn delete(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    // Membership first, so another organization's user gets the same "not found" as on GET.
    Layout::signed_in(&state, &form.session, Some(org), "Delete record", "collections").await?;
    let version = form.fields.get("version").parse::<i32>().ok();
    match state.app.delete_record(&form.session.proof, org, &name, id, version, &meta).await {
        Ok(()) => Ok(see_other(&format!("/orgs/{org}/collections/{name}"), "record-deleted")),
        // Changed since the confirmation was shown: show it again, with the current version.
        Err(AppError::PreconditionFailed) => {
            let page = delete_page(&state, &form.session, (org, name, id), true).await?;
            Ok(render(StatusCode::PRECONDITION_FAILED, &page))
        }
        Err(err) => Err(err.into()),
    }
}
