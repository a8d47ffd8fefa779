//! Collections: the list, creating one from a name and a JSON Schema, and changing a schema
//! (refused, with the offending records listed, while existing records would break). Also the
//! routes of every collection and record page, and their path parameters.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use palisade_api::ApiState;
use palisade_api::extract::Meta;
use palisade_app::{AppError, IncompatibleRecords};
use palisade_core::{RecordId, ValidationError};
use serde_json::Value;

use crate::auth_pages::PageQuery;
use crate::page::{FieldErrors, Layout, OrgParam, WebError, ok, render, see_other};
use crate::record_form::add_error;
use crate::session::{Session, SessionForm};
use crate::{record_form, record_pages};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/collections", get(list))
        .route("/orgs/{org}/collections/new", get(new_form).post(create))
        .route("/orgs/{org}/schema-check", post(check_schema))
        .route("/orgs/{org}/collections/{name}", get(record_pages::table))
        .route("/orgs/{org}/collections/{name}/schema", get(schema_form).post(change_schema))
        .route("/orgs/{org}/collections/{name}/records/new", get(record_form::new_form).post(record_form::create))
        .route("/orgs/{org}/collections/{name}/records/{id}", get(record_pages::detail).post(record_pages::reveal))
        .route(
            "/orgs/{org}/collections/{name}/records/{id}/edit",
            get(record_form::edit_form).post(record_form::update),
        )
        .route(
            "/orgs/{org}/collections/{name}/records/{id}/delete",
            get(record_pages::delete_form).post(record_pages::delete),
        )
}

/// The `{name}` of a collection path. Any text is accepted here: the app answers "not found"
/// for a name that cannot be a collection, as for one in another organization.
pub struct CollectionParam(pub String);

/// The `{id}` of a record path; one that does not parse is "not found".
pub struct RecordParam(pub RecordId);

async fn raw_param<S: Send + Sync>(
    parts: &mut axum::http::request::Parts,
    state: &S,
    name: &str,
) -> Result<String, WebError> {
    use axum::extract::FromRequestParts;
    let params =
        axum::extract::RawPathParams::from_request_parts(parts, state).await.map_err(|_| WebError::NotFound)?;
    params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_owned()).ok_or(WebError::NotFound)
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CollectionParam {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        raw_param(parts, state, "name").await.map(CollectionParam)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordParam {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw_param(parts, state, "id").await?;
        raw.parse().map(RecordParam).map_err(|_| WebError::NotFound)
    }
}

/// A collection as the list shows it.
struct CollectionRow {
    name: String,
    description: Option<String>,
    version: i32,
    fields: usize,
}

#[derive(Template)]
#[template(path = "collections.html")]
struct CollectionsPage {
    l: Layout,
    collections: Vec<CollectionRow>,
}

pub async fn list(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Collections", "collections")
        .await?
        .with_notice(query.notice.as_deref());
    let collections = state
        .app
        .list_collections(&session.proof, org)
        .await?
        .into_iter()
        .map(|c| CollectionRow {
            description: c.schema.get("description").and_then(Value::as_str).map(str::to_owned),
            fields: c.schema.get("properties").and_then(Value::as_object).map_or(0, |p| p.len()),
            version: c.version,
            name: c.name,
        })
        .collect();
    Ok(ok(&CollectionsPage { l, collections }))
}

/// What the "new collection" form starts with: a small schema to adapt.
const EXAMPLE_SCHEMA: &str = r#"{
  "type": "object",
  "description": "Work orders for the field team",
  "properties": {
    "title": {"type": "string", "title": "Title", "maxLength": 200},
    "status": {"type": "string", "title": "Status", "enum": ["open", "in_progress", "done"]},
    "amount": {"type": "number", "title": "Amount", "minimum": 0}
  },
  "required": ["title"]
}"#;

#[derive(Template)]
#[template(path = "collection_new.html")]
struct NewCollectionPage {
    l: Layout,
    name: String,
    schema: String,
    errors: FieldErrors,
}

pub async fn new_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "New collection", "collections").await?;
    Ok(ok(&NewCollectionPage {
        l,
        name: String::new(),
        schema: EXAMPLE_SCHEMA.to_owned(),
        errors: FieldErrors::default(),
    }))
}

/// The schema textarea as JSON, or the error shown next to it.
fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("This is not valid JSON (line {}, column {}): fix it and send it again.", e.line(), e.column())
    })
}

/// The app's violations of a collection, keyed by form field: `/name` → `name`; `/schema/…` →
/// `schema`, with the place inside the schema in the message.
fn collection_errors(errors: Vec<ValidationError>) -> Vec<(String, String)> {
    let mut shown = Vec::new();
    for e in errors {
        match e.field.strip_prefix("/schema") {
            Some("") => add_error(&mut shown, "schema", &e.message),
            Some(inner) => add_error(&mut shown, "schema", &format!("at {inner}: {}", e.message)),
            None => add_error(&mut shown, e.field.trim_start_matches('/'), &e.message),
        }
    }
    shown
}

pub async fn create(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &form.session, Some(org), "New collection", "collections").await?;
    let name = form.fields.get("name").trim().to_owned();
    let schema_text = form.fields.get("schema").to_owned();
    let (status, errors) = match parse_json(&schema_text) {
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, vec![("schema".to_owned(), message)]),
        Ok(schema) => match state.app.create_collection(&form.session.proof, org, &name, &schema, &meta).await {
            Ok(created) => {
                return Ok(see_other(&format!("/orgs/{org}/collections/{}", created.name), "collection-created"));
            }
            Err(AppError::Validation(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, collection_errors(errors)),
            Err(AppError::Conflict(why)) => (StatusCode::CONFLICT, vec![("name".to_owned(), format!("{why}."))]),
            Err(err) => return Err(err.into()),
        },
    };
    let page = NewCollectionPage { l, name, schema: schema_text, errors: FieldErrors(errors) };
    Ok(render(status, &page))
}

/// A record that blocks a schema change, with what breaks.
struct Blocking {
    id: String,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "collection_schema.html")]
struct SchemaPage {
    l: Layout,
    name: String,
    version: i32,
    schema: String,
    defaults: String,
    errors: FieldErrors,
    blocking: Vec<Blocking>,
    more_blocking: usize,
}

/// The most blocking records listed by id; the count says how many more there are.
const BLOCKING_SHOWN: usize = 20;

pub async fn schema_form(
    State(state): State<ApiState>,
    session: Session,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), format!("Schema · {name}"), "collections").await?;
    let collection = state.app.get_collection(&session.proof, org, &name).await?;
    Ok(ok(&SchemaPage {
        l,
        schema: serde_json::to_string_pretty(&collection.schema).unwrap_or_default(),
        version: collection.version,
        name: collection.name,
        defaults: String::new(),
        errors: FieldErrors::default(),
        blocking: Vec::new(),
        more_blocking: 0,
    }))
}

pub async fn change_schema(
    State(state): State<ApiState>,
    Meta(meta): Meta,
    OrgParam(org): OrgParam,
    CollectionParam(name): CollectionParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let proof = &form.session.proof;
    let l = Layout::signed_in(&state, &form.session, Some(org), format!("Schema · {name}"), "collections").await?;
    let current = state.app.get_collection(proof, org, &name).await?;
    let schema_text = form.fields.get("schema").to_owned();
    let defaults_text = form.fields.get("defaults").to_owned();
    let mut errors = Vec::new();
    let schema = parse_json(&schema_text).map_err(|m| errors.push(("schema".to_owned(), m))).ok();
    // Migration defaults are optional: values for top-level fields that existing records lack.
    let defaults = match defaults_text.trim() {
        "" => None,
        text => match parse_json(text) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => {
                errors.push(("defaults".to_owned(), "Give a JSON object, e.g. {\"status\": \"open\"}.".to_owned()));
                None
            }
            Err(message) => {
                errors.push(("defaults".to_owned(), message));
                None
            }
        },
    };
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut blocking = Vec::new();
    let mut more_blocking = 0;
    if let (Some(schema), true) = (schema, errors.is_empty()) {
        match state.app.change_collection_schema(proof, org, &name, &schema, defaults.as_ref(), &meta).await {
            Ok(Ok(_)) => return Ok(see_other(&format!("/orgs/{org}/collections/{name}"), "schema-saved")),
            Ok(Err(IncompatibleRecords(offending))) => {
                status = StatusCode::CONFLICT;
                let message = format!(
                    "{} existing record(s) would not match this schema, so nothing was changed. Fix those records, \
                     or give defaults for fields they lack.",
                    offending.len()
                );
                errors.push(("schema".to_owned(), message));
                more_blocking = offending.len().saturating_sub(BLOCKING_SHOWN);
                blocking = offending
                    .into_iter()
                    .take(BLOCKING_SHOWN)
                    .map(|(id, violations)| Blocking {
                        id: id.to_string(),
                        problems: violations
                            .into_iter()
                            .map(|v| match v.field.strip_prefix("/data") {
                                Some("") | None => v.message,
                                Some(at) => format!("{}: {}", at.trim_start_matches('/'), v.message),
                            })
                            .collect(),
                    })
                    .collect();
            }
            Err(AppError::Validation(violations)) => errors = collection_errors(violations),
            Err(AppError::Conflict(why)) => {
                status = StatusCode::CONFLICT;
                errors.push(("schema".to_owned(), format!("{why}.")));
            }
            Err(err) => return Err(err.into()),
        }
    }
    let page = SchemaPage {
        l,
        name,
        version: current.version,
        schema: schema_text,
        defaults: defaults_text,
        errors: FieldErrors(errors),
        blocking,
        more_blocking,
    };
    Ok(render(status, &page))
}

#[derive(Template)]
#[template(path = "schema_check.html")]
struct SchemaCheck {
    problems: Vec<String>,
}

/// The live check under the schema editor (htmx posts the form while the user types): the same
/// compilation a save runs, nothing stored. The app checks the session, the membership and
/// collections.manage first, so this is no anonymous compiler.
async fn check_schema(
    State(state): State<ApiState>,
    OrgParam(org): OrgParam,
    form: SessionForm,
) -> Result<Response, WebError> {
    let problems = match serde_json::from_str::<serde_json::Value>(form.fields.get("schema")) {
        Err(err) => vec![format!("Not valid JSON: {err}")],
        Ok(schema) => match state.app.check_collection_schema(&form.session.proof, org, &schema).await? {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| {
                    format!("{} {}", e.field.trim_start_matches('/').trim_start_matches("schema"), e.message)
                        .trim()
                        .to_owned()
                })
                .collect(),
        },
    };
    Ok(ok(&SchemaCheck { problems }))
}
