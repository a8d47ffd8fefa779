//! Security pages: the organization's encryption key status here; API keys and secrets in
//! `api_key_pages` and `secret_pages`, merged into the same routes.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use palisade_api::ApiState;

use crate::page::{Layout, OrgParam, WebError, ok};
use crate::session::Session;
use crate::view::{when, when_or_never};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/orgs/{org}/keys", get(keys))
        .merge(crate::api_key_pages::routes())
        .merge(crate::secret_pages::routes())
}

struct DataKeyLine {
    id: String,
    active: bool,
    wrapping_key: String,
    created: String,
    rewrapped: String,
    retired: String,
    values: i64,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    l: Layout,
    provider: &'static str,
    master_key_id: String,
    rotation_period_days: i64,
    current: Option<String>,
    last_rotated: String,
    next_rotation: String,
    rotating: bool,
    values_left: i64,
    keys: Vec<DataKeyLine>,
}

/// What `GET /api/v1/orgs/{org}/keys` answers, as a page: never key material, only ids and dates.
async fn keys(State(state): State<ApiState>, session: Session, OrgParam(org): OrgParam) -> Result<Response, WebError> {
    let l = Layout::signed_in(&state, &session, Some(org), "Encryption keys", "keys").await?;
    let status = state.app.org_key_status(&session.proof, org).await?;
    let keys: Vec<DataKeyLine> = status
        .keys
        .iter()
        .map(|k| DataKeyLine {
            id: palisade_app::keyring::data_key_label(k.key.id),
            active: k.key.retired_at.is_none(),
            wrapping_key: k.key.wrapping_key.clone(),
            created: when(k.key.created_at),
            rewrapped: when_or_never(k.key.rewrapped_at),
            retired: k.key.retired_at.map(when).unwrap_or_default(),
            values: k.values_left,
        })
        .collect();
    Ok(ok(&KeysPage {
        l,
        provider: status.provider.kind,
        master_key_id: status.provider.master_key_id.clone(),
        rotation_period_days: status.rotation_period.whole_days(),
        current: keys.iter().find(|k| k.active).map(|k| k.id.clone()),
        last_rotated: when_or_never(status.last_rotated_at()),
        next_rotation: status.next_rotation_at().map(when).unwrap_or_else(|| "not scheduled".to_owned()),
        rotating: status.rotating(),
        values_left: status.values_left_to_reencrypt(),
        keys,
    }))
}
