//! The signed-in user's own account.

use axum::Json;
use axum::extract::State;
use palisade_core::UserId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::Caller;
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    #[schema(value_type = String, example = "usr_01h455vb4pex5vsknk084sn02q")]
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub is_instance_admin: bool,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = MeResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<MeResponse>> {
    let me = state.app.me(&caller.proof).await?;
    Ok(Json(MeResponse {
        id: me.id,
        email: me.email,
        name: me.name,
        is_instance_admin: me.is_instance_admin,
        created_at: rfc3339(me.created_at),
    }))
}
