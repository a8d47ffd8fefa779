//! The record form generated from a collection's JSON Schema (one control per top-level
//! property), the conversion of posted strings back into typed JSON by that schema, and the
//! new/edit pages that use them.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, Member, RecordInput, RecordUpdate};
use palisade_core::ValidationError;
use serde_json::{Map, Value};

use crate::collection_pages::{CollectionParam, RecordParam};
use crate::page::{Layout, OrgParam, WebError, ok, render, see_other};
use crate::session::{Fields, Session, SessionForm};

/// One top-level property of a schema, as the console shows and edits it.
#[derive(Clone)]
pub struct FieldSpec {
    pub name: String,
    pub label: String,
    pub description: Option<String>,
    /// "input", "select", "checkbox" or "json" (a JSON textarea).
    pub kind: &'static str,
    /// For "input": text, email, date or number.
    pub input_type: &'static str,
    pub step: Option<&'static str>,
    pub max_length: Option<u64>,
    /// For "select": each choice as shown (and posted), and the JSON value it stands for.
    pub choices: Vec<(String, Value)>,
    pub json_type: Option<String>,
    pub required: bool,
    pub sensitive: bool,
}

impl FieldSpec {
    /// Scalars the list can filter and sort on (the app refuses sensitive fields).
    pub fn filterable(&self) -> bool {
        !self.sensitive && matches!(self.json_type.as_deref(), Some("string" | "integer" | "number" | "boolean"))
    }
}

/// How a choice of an `enum` (or a sensitive boolean) is shown and posted.
fn choice_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The top-level properties of a collection schema, in form order. Stored schemas come back
/// with their keys sorted (jsonb), so declaration order is lost: required fields come first in
/// the order `required` lists them, then the rest by name.
pub fn fields_of(schema: &Value) -> Vec<FieldSpec> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = properties.keys().collect();
    names.sort_by_key(|n| (required.iter().position(|r| r == n).unwrap_or(usize::MAX), n.as_str()));
    names.into_iter().map(|name| spec(name, &properties[name.as_str()], required.contains(&name.as_str()))).collect()
}

fn spec(name: &str, property: &Value, required: bool) -> FieldSpec {
    let text = |key: &str| property.get(key).and_then(Value::as_str).map(str::to_owned);
    let json_type = text("type");
    let sensitive = property.get("x-palisade-sensitive") == Some(&Value::Bool(true));
    let enum_values = property.get("enum").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut field = FieldSpec {
        name: name.to_owned(),
        label: text("title").filter(|t| !t.trim().is_empty()).unwrap_or_else(|| name.to_owned()),
        description: text("description").filter(|d| !d.trim().is_empty()),
        kind: "json",
        input_type: "text",
        step: None,
        max_length: property.get("maxLength").and_then(Value::as_u64),
        choices: Vec::new(),
        json_type,
        required,
        sensitive,
    };
    if !enum_values.is_empty() {
        field.kind = "select";
        field.choices = enum_values.iter().map(|v| (choice_text(v), v.clone())).collect();
        return field;
    }
    match field.json_type.as_deref() {
        Some("string") => {
            field.kind = "input";
            field.input_type = match property.get("format").and_then(Value::as_str) {
                Some("email") => "email",
                Some("date") => "date",
                _ => "text",
            };
        }
        Some(number @ ("integer" | "number")) => {
            field.kind = "input";
            field.input_type = "number";
            field.step = Some(if number == "integer" { "1" } else { "any" });
        }
        // A checkbox cannot say "leave it as it is", which a hidden sensitive value needs.
        Some("boolean") if sensitive => {
            field.kind = "select";
            field.choices = vec![("true".into(), Value::Bool(true)), ("false".into(), Value::Bool(false))];
        }
        Some("boolean") => field.kind = "checkbox",
        _ => {}
    }
    field
}

/// The form's answer turned into JSON: the fields to write, the sensitive fields left empty on
/// an edit (their stored value stays), and the fields that could not be read.
#[derive(Default)]
pub struct Converted {
    pub data: Map<String, Value>,
    pub keep: Vec<String>,
    pub errors: Vec<(String, String)>,
}

/// Types each posted `field.<name>` by the schema. An empty optional field is left out; on an
/// edit, an empty sensitive field means "keep the stored value" (it is never shown in the form).
pub fn convert(specs: &[FieldSpec], posted: &Fields, editing: bool) -> Converted {
    let mut out = Converted::default();
    for spec in specs {
        let raw = posted.get(&format!("field.{}", spec.name));
        if spec.kind == "checkbox" {
            out.data.insert(spec.name.clone(), Value::Bool(raw == "true"));
            continue;
        }
        if raw.trim().is_empty() {
            if editing && spec.sensitive {
                out.keep.push(spec.name.clone());
            } else if spec.required {
                out.errors.push((spec.name.clone(), "Fill in this field.".into()));
            }
            continue;
        }
        match typed(spec, raw) {
            Ok(value) => {
                out.data.insert(spec.name.clone(), value);
            }
            Err(message) => out.errors.push((spec.name.clone(), message.into())),
        }
    }
    out
}

fn typed(spec: &FieldSpec, raw: &str) -> Result<Value, &'static str> {
    match spec.kind {
        "select" => spec
            .choices
            .iter()
            .find(|(text, _)| text == raw)
            .map(|(_, v)| v.clone())
            .ok_or("Choose one of the listed values."),
        "json" => {
            serde_json::from_str(raw).map_err(|_| "Enter valid JSON, for example {\"key\": \"value\"} or [1, 2].")
        }
        _ => match spec.json_type.as_deref() {
            Some("integer") => raw.trim().parse::<i64>().map(Value::from).map_err(|_| "Enter a whole number."),
            Some("number") => number(raw.trim()).ok_or("Enter a number."),
            _ => Ok(Value::String(raw.to_owned())),
        },
    }
}

/// A number as JSON: whole numbers stay integers (so 5 is stored as 5, not 5.0).
fn number(text: &str) -> Option<Value> {
    if let Ok(whole) = text.parse::<i64>() {
        return Some(Value::from(whole));
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite()).and_then(serde_json::Number::from_f64).map(Value::Number)
}

/// A stored value as the form shows it.
fn form_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// The app's violations of a record, keyed by form field: `/data/amount/…` → `amount`;
/// a missing required property (reported at `/data`) → that property; `/assignees/…` →
/// `assignees`; anything else → `_form`, with its pointer in the message.
pub fn record_errors(errors: Vec<ValidationError>, specs: &[FieldSpec]) -> Vec<(String, String)> {
    let known = |name: &str| specs.iter().any(|s| s.name == name);
    errors
        .into_iter()
        .map(|e| {
            let key = if let Some(path) = e.field.strip_prefix("/data/") {
                let first = path.split('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~");
                Some(first).filter(|f| known(f))
            } else if e.field == "/data" {
                specs.iter().find(|s| e.message.contains(&format!("\"{}\"", s.name))).map(|s| s.name.clone())
            } else if e.field.starts_with("/assignees") {
                Some("assignees".to_owned())
            } else {
                None
            };
            match key {
                Some(key) => (key, e.message),
                None => ("_form".to_owned(), format!("{}: {}", e.field.trim_start_matches("/data"), e.message)),
            }
        })
        .collect()
}

/// Adds `message` to `field`'s errors (one line per field, messages joined).
pub fn add_error(errors: &mut Vec<(String, String)>, field: &str, message: &str) {
    match errors.iter_mut().find(|(f, _)| f == field) {
        Some((_, existing)) => {
            existing.push_str("; ");
            existing.push_str(message);
        }
        None => errors.push((field.to_owned(), message.to_owned())),
    }
}

/// An option of a select.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One control of the rendered form.
pub struct FieldView {
    pub s: FieldSpec,
    pub value: String,
    pub checked: bool,
    pub choices: Vec<Choice>,
    pub required: bool,
    pub help: Option<String>,
    pub error: Option<String>,
}

impl FieldView {
    fn new(s: FieldSpec, value: String, checked: bool, editing: bool) -> FieldView {
        let choices = s
            .choices
            .iter()
            .map(|(text, _)| Choice { value: text.clone(), label: text.clone(), selected: *text == value })
            .collect();
        let hidden_note = (editing && s.sensitive).then_some(
            "Sensitive: not shown here. Leave it empty to keep the current value, or type a new one to replace it.",
        );
        let help = match (&s.description, hidden_note) {
            (Some(d), Some(n)) => Some(format!("{d} {n}")),
            (Some(d), None) => Some(d.clone()),
            (None, note) => note.map(str::to_owned),
        };
        FieldView { required: s.required && !(editing && s.sensitive), s, value, checked, choices, help, error: None }
    }

    /// The ids of the help text and error that describe the control.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.help.is_some() {
            ids.push(format!("field-{}-help", self.s.name));
        }
        if self.error.is_some() {
            ids.push(format!("field-{}-error", self.s.name));
        }
        ids.join(" ")
    }
}

/// The form for a new record: empty, or what was posted.
fn views(specs: &[FieldSpec], posted: Option<&Fields>, editing: bool, errors: &[(String, String)]) -> Vec<FieldView> {
    specs
        .iter()
        .map(|s| {
            // A sensitive value typed into a form that comes back with errors is not echoed into
            // the page: it would show on screen without the Reveal step. It is typed again.
            let raw = posted
                .filter(|_| !s.sensitive)
                .map(|p| p.get(&format!("field.{}", s.name)).to_owned())
                .unwrap_or_default();
            let mut view = FieldView::new(s.clone(), raw.clone(), raw == "true", editing);
            view.error = errors.iter().find(|(f, _)| *f == s.name).map(|(_, m)| m.clone());
            view
        })
        .collect()
}

/// The form for an existing record. Sensitive values are never put into the form (a form
/// shows them to anyone looking at the screen, without the record page's Reveal step).
fn views_of_record(specs: &[FieldSpec], data: &Value) -> Vec<FieldView> {
    specs
        .iter()
        .map(|s| {
            let stored = data.get(&s.name).filter(|_| !s.sensitive);
            let value = stored.map(form_text).unwrap_or_default();
            let checked = stored == Some(&Value::Bool(true));
            FieldView::new(s.clone(), value, checked, true)
        })
        .collect()
}

fn member_choices(members: &[Member], selected: &[String]) -> Vec<Choice> {
    members
        .iter()
        .map(|m| {
            let id = m.user_id.to_string();
            Choice { selected: selected.contains(&id), label: format!("{} ({})", m.name, m.email), value: id }
        })
        .collect()
}

fn posted_assignees(fields: &Fields) -> Vec<String> {
    fields.0.iter().filter(|(k, v)| k == "assignees" && !v.is_empty()).map(|(_, v)| v.clone()).collect()
}

#[derive(Template)]
#[template(path = "record_form.html")]
struct RecordFormPage {
    l: Layout,
    collection: String,
    action: String,
    cancel: String,
    editing: bool,
    version: Option<i32>,
    fields: Vec<FieldView>,
    members: Vec<Choice>,
    assignees_error: Option<String>,
    form_errors: Vec<String>,
    stale: bool,
}

impl RecordFormPage {
    fn with_errors(mut self, errors: &[(String, String)]) -> Self {
        self.assignees_error = errors.iter().find(|(f, _)| f == "assignees").map(|(_, m)| m.clone());
        self.form_errors = errors.iter().filter(|(f, _)| f == "_form").map(|(_, m)| m.clone()).collect();
        self
    }
}

fn collection_path(l: &Layout, name: &str) -> String {
    format!("/orgs/{}/collections/{name}", l.org_id())
}

pub async fn new_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), format!("New record · {name}"), "collections").await?;
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    let members = state.app.list_members(&session.proof, org).await?;
    let base = collection_path(&l, &name);
    Ok(ok(&RecordFormPage {
        action: format!("{base}/records/new"),
        cancel: base,
        collection: name,
        editing: false,
        version: None,
        fields: views(&fields_of(&collection.schema), None, false, &[]),
        members: member_choices(&members, &[]),
        assignees_error: None,
        form_errors: Vec::new(),
        stale: false,
        l,
    }))
}

pub async fn create(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let proof = &form.session.proof;
    let l = Layout::signed_in(&state, &form.session, Some(org), format!("New record · {name}"), "collections").await?;
    let collection = state.app.get_collection(proof, org, &name).await?;
    let specs = fields_of(&collection.schema);
    let converted = convert(&specs, &form.fields, false);
    let assignees = posted_assignees(&form.fields);
    let mut errors = converted.errors;
    // Nothing is sent to the app while any field cannot be read: no partial record is written.
    if errors.is_empty() {
        let input = RecordInput { data: Value::Object(converted.data), assignees: assignees.clone() };
        match state.app.create_record(proof, org, &name, input, &meta).await {
            Ok(view) => {
                let path = format!("{}/records/{}", collection_path(&l, &name), view.record.id);
                return Ok(see_other(&path, "record-created"));
            }
            Err(AppError::Validation(violations)) => errors = record_errors(violations, &specs),
            Err(AppError::PayloadTooLarge(why)) => errors.push(("_form".into(), why)),
            Err(err) => return Err(err.into()),
        }
    }
    let members = state.app.list_members(proof, org).await?;
    let base = collection_path(&l, &name);
    let page = RecordFormPage {
        action: format!("{base}/records/new"),
        cancel: base,
        collection: name,
        editing: false,
        version: None,
        fields: views(&specs, Some(&form.fields), false, &errors),
        members: member_choices(&members, &assignees),
        assignees_error: None,
        form_errors: Vec::new(),
        stale: false,
        l,
    };
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page.with_errors(&errors)))
}

pub async fn edit_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), format!("Edit record · {name}"), "collections").await?;
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    // The form never shows sensitive values, so they are not opened (and no read is audited).
    let view = state.app.get_record_concealed(&session.proof, org, &name, id).await?.view;
    let members = state.app.list_members(&session.proof, org).await?;
    let assignees: Vec<String> = view.record.assignees.iter().map(ToString::to_string).collect();
    let record = format!("{}/records/{id}", collection_path(&l, &name));
    Ok(ok(&RecordFormPage {
        action: format!("{record}/edit"),
        cancel: record,
        collection: name,
        editing: true,
        version: Some(view.record.version),
        fields: views_of_record(&fields_of(&collection.schema), &view.record.data),
        members: member_choices(&members, &assignees),
        assignees_error: None,
        form_errors: Vec::new(),
        stale: false,
        l,
    }))
}

/// What the edit writes, as an RFC 7396 merge patch: every property the form shows is set to
/// what was posted, or removed (null) when left out — except sensitive fields left empty, which
/// keep their stored value. Properties outside the schema's `properties` are not in the form and
/// stay as stored. The app applies the patch to the stored record, so nothing is read here.
fn edit_patch(specs: &[FieldSpec], mut posted: Map<String, Value>, keep: &[String]) -> Value {
    for spec in specs {
        if !keep.contains(&spec.name) && !posted.contains_key(&spec.name) {
            posted.insert(spec.name.clone(), Value::Null);
        }
    }
    Value::Object(posted)
}

pub async fn update(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    RecordParam(id): RecordParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let proof = &form.session.proof;
    let l = Layout::signed_in(&state, &form.session, Some(org), format!("Edit record · {name}"), "collections").await?;
    let version: i32 = form.fields.get("version").parse().map_err(|_| WebError::BadForm)?;
    let collection = state.app.get_collection(proof, org, &name).await?;
    let specs = fields_of(&collection.schema);
    let Converted { data, keep, mut errors } = convert(&specs, &form.fields, true);
    let assignees = posted_assignees(&form.fields);
    let mut stale = false;
    if errors.is_empty() {
        // The write names the version the form was opened at, so a change made meanwhile is
        // refused instead of overwritten.
        let change = RecordUpdate {
            data: edit_patch(&specs, data, &keep),
            assignees: Some(assignees.clone()),
            patch: true,
            expected_version: Some(version),
        };
        match state.app.update_record(proof, org, &name, id, change, &meta).await {
            Ok(_) => {
                let path = format!("{}/records/{id}", collection_path(&l, &name));
                return Ok(see_other(&path, "record-saved"));
            }
            Err(AppError::PreconditionFailed) => stale = true,
            Err(AppError::Validation(violations)) => errors = record_errors(violations, &specs),
            Err(AppError::PayloadTooLarge(why)) => errors.push(("_form".into(), why)),
            Err(err) => return Err(err.into()),
        }
    }
    let members = state.app.list_members(proof, org).await?;
    let record = format!("{}/records/{id}", collection_path(&l, &name));
    let page = RecordFormPage {
        action: format!("{record}/edit"),
        cancel: record,
        collection: name,
        editing: true,
        version: Some(version),
        fields: views(&specs, Some(&form.fields), true, &errors),
        members: member_choices(&members, &assignees),
        assignees_error: None,
        form_errors: Vec::new(),
        stale,
        l,
    };
    let status = if stale { StatusCode::PRECONDITION_FAILED } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(render(status, &page.with_errors(&errors)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Vec<FieldSpec> {
        fields_of(&json!({"type": "object", "required": ["title"], "properties": {
            "amount": {"type": "number"}, "count": {"type": "integer"}, "done": {"type": "boolean"},
            "status": {"type": "string", "enum": ["open", "done"]}, "title": {"type": "string", "maxLength": 5},
            "meta": {"type": "object"}, "secret": {"type": "string", "x-palisade-sensitive": true}}}))
    }

    fn posted(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn controls_follow_the_schema_required_first() {
        let s = specs();
        assert_eq!(s[0].name, "title");
        let kind = |n: &str| s.iter().find(|f| f.name == n).map(|f| (f.kind, f.input_type, f.step)).unwrap();
        assert_eq!(kind("amount"), ("input", "number", Some("any")));
        assert_eq!(kind("count"), ("input", "number", Some("1")));
        assert_eq!(kind("done").0, "checkbox");
        assert_eq!(kind("status").0, "select");
        assert_eq!(kind("meta").0, "json");
        assert!(!s.iter().find(|f| f.name == "secret").unwrap().filterable());
    }

    #[test]
    fn posted_strings_are_typed_and_bad_ones_named() {
        let s = specs();
        let good = convert(
            &s,
            &posted(&[
                ("field.title", "Roof"),
                ("field.amount", "2.5"),
                ("field.count", "3"),
                ("field.done", "true"),
                ("field.status", "open"),
                ("field.meta", "{\"a\": 1}"),
            ]),
            false,
        );
        assert!(good.errors.is_empty());
        assert_eq!(
            Value::Object(good.data),
            json!({"title": "Roof", "amount": 2.5, "count": 3, "done": true,
            "status": "open", "meta": {"a": 1}})
        );
        let bad = convert(
            &s,
            &posted(&[("field.amount", "abc"), ("field.count", "1.5"), ("field.status", "x"), ("field.meta", "{")]),
            false,
        );
        let names: Vec<&str> = bad.errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["title", "amount", "count", "meta", "status"]);
        let edit = convert(&s, &posted(&[("field.title", "Roof")]), true);
        assert_eq!(edit.keep, ["secret"]);
    }

    #[test]
    fn app_violations_land_on_their_field() {
        let s = specs();
        let mapped = record_errors(
            vec![
                ValidationError { field: "/data/amount".into(), message: "bad".into() },
                ValidationError { field: "/data".into(), message: "\"title\" is a required property".into() },
                ValidationError { field: "/assignees/0".into(), message: "no".into() },
                ValidationError { field: "/data/other".into(), message: "x".into() },
            ],
            &s,
        );
        let keys: Vec<&str> = mapped.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(keys, ["amount", "title", "assignees", "_form"]);
    }
}
