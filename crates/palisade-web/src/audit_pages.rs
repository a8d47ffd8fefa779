//! The audit log (being written).

use axum::Router;
use palisade_api::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
}
