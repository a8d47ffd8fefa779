//! Records of a collection: create, read, replace, merge-patch, delete, list with filters,
//! sort and cursors. Responses carry the version as a strong ETag; If-Match makes a change
//! conditional (412 when stale).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use palisade_app::{RecordInput, RecordPage, RecordUpdate, RecordView};
use palisade_core::OrgId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{ApiJson, Caller, IfMatch, Meta, OrgAnd, RecordPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct RecordResponse {
    #[schema(example = "rec_01h455vb4pex5vsknk084sn02q")]
    pub id: String,
    /// The record's fields. Fields marked sensitive are left out for roles without
    /// records.sensitive_read, and named in `masked`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// + 1 with every change; also the ETag.
    pub version: i32,
    #[schema(example = "usr_01h455vb4pex5vsknk084sn02q")]
    pub created_by: String,
    pub assignees: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
}

impl From<RecordView> for RecordResponse {
    fn from(view: RecordView) -> Self {
        let r = view.record;
        Self {
            id: r.id.to_string(),
            data: r.data,
            version: r.version,
            created_by: r.created_by.to_string(),
            assignees: r.assignees.iter().map(ToString::to_string).collect(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            masked: view.masked,
        }
    }
}

fn with_etag(view: RecordView) -> (HeaderMap, Json<RecordResponse>) {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", view.record.version)) {
        headers.insert(header::ETAG, etag);
    }
    (headers, Json(view.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// An object valid under the collection's schema (at most 256 KiB).
    #[schema(value_type = Object)]
    pub data: Value,
    /// Members who may see and work on the record even without records.read_all.
    #[serde(default)]
    pub assignees: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/collections/{name}/records", tag = "records", request_body = RecordBody,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created; ETag is the version", body = RecordResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks records.create", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The record is larger than 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The data breaks the schema: `errors` lists each violation at its JSON pointer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, name): OrgAnd<String>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<(StatusCode, HeaderMap, Json<RecordResponse>)> {
    let input = RecordInput { data: body.data, assignees: body.assignees.unwrap_or_default() };
    let created = state.app.create_record(&caller.proof, org, &name, input, &meta).await?;
    let (headers, json) = with_etag(created);
    Ok((StatusCode::CREATED, headers, json))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/collections/{name}/records/{record}", tag = "records",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id (rec_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The record; ETag is the version", body = RecordResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    RecordPath(org, name, id): RecordPath,
    Meta(meta): Meta,
) -> ApiResult<(HeaderMap, Json<RecordResponse>)> {
    Ok(with_etag(state.app.get_record(&caller.proof, org, &name, id, &meta).await?))
}

async fn update(
    state: ApiState,
    caller: Caller,
    (org, name, id): (OrgId, String, palisade_core::RecordId),
    if_match: Option<i32>,
    meta: palisade_app::RequestMeta,
    body: RecordBody,
    patch: bool,
) -> ApiResult<(HeaderMap, Json<RecordResponse>)> {
    let change = RecordUpdate { data: body.data, assignees: body.assignees, patch, expected_version: if_match };
    Ok(with_etag(state.app.update_record(&caller.proof, org, &name, id, change, &meta).await?))
}

#[utoipa::path(put, path = "/api/v1/orgs/{org}/collections/{name}/records/{record}", tag = "records", request_body = RecordBody,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id (rec_…)"),
        ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Replaced; version + 1", body = RecordResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks records.update", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace(
    State(state): State<ApiState>,
    caller: Caller,
    RecordPath(org, name, id): RecordPath,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<(HeaderMap, Json<RecordResponse>)> {
    update(state, caller, (org, name, id), if_match, meta, body, false).await
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org}/collections/{name}/records/{record}", tag = "records", request_body = RecordBody,
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id (rec_…)"),
        ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "`data` merged as an RFC 7396 merge patch (null removes a field); version + 1", body = RecordResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch(
    State(state): State<ApiState>,
    caller: Caller,
    RecordPath(org, name, id): RecordPath,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<RecordBody>,
) -> ApiResult<(HeaderMap, Json<RecordResponse>)> {
    update(state, caller, (org, name, id), if_match, meta, body, true).await
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/collections/{name}/records/{record}", tag = "records",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name"), ("record" = String, Path, description = "Record id (rec_…)"),
        ("If-Match" = Option<String>, Header, description = "The ETag you read; 412 if the record changed since")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks records.delete", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    RecordPath(org, name, id): RecordPath,
    IfMatch(if_match): IfMatch,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.app.delete_record(&caller.proof, org, &name, id, if_match, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RecordList {
    pub items: Vec<RecordResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/collections/{name}/records", tag = "records",
    params(("org" = String, Path, description = "Organization id (org_…)"), ("name" = String, Path, description = "Collection name"),
        ("filter[field][op]" = Option<String>, Query, description = "Filter on a top-level, non-sensitive field of the schema; op is eq (default), ne, gt, gte, lt, lte or in (comma-separated values)"),
        ("sort" = Option<String>, Query, description = "`id` (default, creation order) or a field; prefix `-` for descending"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (same filters and sort)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "One page of the records the caller may see", body = RecordList),
        (status = 400, description = "`invalid-query`: each bad parameter named", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    OrgAnd(org, name): OrgAnd<String>,
    RawQuery(query): RawQuery,
    Meta(meta): Meta,
) -> ApiResult<Json<RecordList>> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let RecordPage { items, next_cursor } = state.app.list_records(&caller.proof, org, &name, &pairs, &meta).await?;
    Ok(Json(RecordList { items: items.into_iter().map(Into::into).collect(), next_cursor }))
}
