//! Collections: an organization's record types, each addressed by name, with a JSON Schema.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_app::{Collection, IncompatibleRecords};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, Meta, OrgAnd, OrgPath};
use crate::problem::{ApiResult, FieldError, Problem};
use crate::routes::{Items, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct CollectionResponse {
    #[schema(example = "work_orders")]
    pub name: String,
    /// JSON Schema draft 2020-12.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// 1 at creation, + 1 with every schema change.
    pub version: i32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Collection> for CollectionResponse {
    fn from(c: Collection) -> Self {
        Self {
            name: c.name,
            schema: c.schema,
            version: c.version,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// `[a-z][a-z0-9_]{0,62}`; the collection's address in URLs.
    #[schema(example = "work_orders")]
    pub name: String,
    /// JSON Schema draft 2020-12 of an object (at most 64 KiB; no remote `$ref`). Top-level
    /// properties may carry `x-palisade-sensitive` and `x-palisade-pii`.
    #[schema(value_type = Object)]
    pub schema: Value,
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/collections", tag = "collections", request_body = CreateCollection,
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created at version 1", body = CollectionResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks collections.manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken, or the collection quota is reached", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or schema; `errors` points into the body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<CreateCollection>,
) -> ApiResult<(StatusCode, Json<CollectionResponse>)> {
    let created = state.app.create_collection(&caller.proof, org, &body.name, &body.schema, &meta).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/collections", tag = "collections",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Every collection, by name", body = Items<CollectionResponse>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<Items<CollectionResponse>>> {
    let list = state.app.list_collections(&caller.proof, org).await?;
    Ok(Json(Items { items: list.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/collections/{name}", tag = "collections",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = CollectionResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, name): OrgAnd<String>,
) -> ApiResult<Json<CollectionResponse>> {
    Ok(Json(state.app.get_collection(&caller.proof, org, &name).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSchema {
    #[schema(value_type = Object)]
    pub schema: Value,
    /// Values for top-level fields that existing records lack; those records get them (as a
    /// new version) in the same transaction as the schema change.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<serde_json::Map<String, Value>>,
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/collections/{name}", tag = "collections", request_body = ChangeSchema,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Schema replaced; version + 1", body = CollectionResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks collections.manage (or records.read_all, needed to check every record)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`schema-incompatible`: existing records would break (`record_ids`); or records changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_schema(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, name): OrgAnd<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ChangeSchema>,
) -> ApiResult<Response> {
    let outcome = state
        .app
        .change_collection_schema(&caller.proof, org, &name, &body.schema, body.defaults.as_ref(), &meta)
        .await?;
    Ok(match outcome {
        Ok(changed) => Json(CollectionResponse::from(changed)).into_response(),
        Err(IncompatibleRecords(offending)) => incompatible(offending).into_response(),
    })
}

fn incompatible(offending: Vec<(palisade_core::RecordId, Vec<palisade_core::ValidationError>)>) -> Problem {
    let mut problem = Problem::new(
        "schema-incompatible",
        format!(
            "{} existing record(s) would not validate against the new schema; nothing was changed.",
            offending.len()
        ),
    );
    for (id, violations) in offending {
        problem.record_ids.push(id.to_string());
        problem.errors.extend(
            violations
                .into_iter()
                .map(|v| FieldError { pointer: format!("/records/{id}{}", v.field), detail: v.message }),
        );
    }
    problem
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/collections/{name}", tag = "collections",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The collection still holds records", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, name): OrgAnd<String>,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.delete_collection(&caller.proof, org, &name, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
