//! The organization's encryption keys as a security reviewer checks them: which provider holds
//! the wrapping key, which data keys exist, when they were made and rotated, when the next
//! rotation is due, and how far a running rotation has got. Never key material.

use axum::Json;
use axum::extract::State;
use palisade_app::KeyStatus;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::extract::{Caller, OrgPath};
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct DataKeyResponse {
    #[schema(example = "dek_01h455vb4pex5vsknk084sn02q")]
    pub id: String,
    /// `active` (encrypts new values) or `retired` (still decrypts until re-encryption ends).
    pub state: &'static str,
    /// The provider's name for the wrapping key this data key is wrapped by.
    #[schema(example = "org_01h455vb4pex5vsknk084sn02q.v1")]
    pub wrapping_key: String,
    pub created_at: String,
    /// When it was last moved to a new wrapping key (a KEK rotation).
    pub rewrapped_at: Option<String>,
    pub retired_at: Option<String>,
    /// Stored values (records' sensitive fields, secrets) it encrypts.
    pub values: i64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyStatusResponse {
    /// `local` (key file + key store) or `pkcs11` (HSM).
    #[schema(example = "local")]
    pub provider: &'static str,
    /// A non-secret id of the provider's master key, which changes when it is rotated.
    pub master_key_id: String,
    pub keys: Vec<DataKeyResponse>,
    pub rotation_period_days: i64,
    pub last_rotated_at: Option<String>,
    pub next_rotation_at: Option<String>,
    /// True while a rotation is re-encrypting values under a retired key.
    pub rotating: bool,
    /// Values still to re-encrypt (0 when no rotation is running).
    pub values_left_to_reencrypt: i64,
}

impl From<KeyStatus> for KeyStatusResponse {
    fn from(status: KeyStatus) -> Self {
        Self {
            provider: status.provider.kind,
            master_key_id: status.provider.master_key_id.clone(),
            rotation_period_days: status.rotation_period.whole_days(),
            last_rotated_at: status.last_rotated_at().map(rfc3339),
            next_rotation_at: status.next_rotation_at().map(rfc3339),
            rotating: status.rotating(),
            values_left_to_reencrypt: status.values_left_to_reencrypt(),
            keys: status
                .keys
                .into_iter()
                .map(|k| DataKeyResponse {
                    id: palisade_app::keyring::data_key_label(k.key.id),
                    state: if k.key.retired_at.is_none() { "active" } else { "retired" },
                    wrapping_key: k.key.wrapping_key,
                    created_at: rfc3339(k.key.created_at),
                    rewrapped_at: k.key.rewrapped_at.map(rfc3339),
                    retired_at: k.key.retired_at.map(rfc3339),
                    values: k.values_left,
                })
                .collect(),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/keys", tag = "keys",
    params(("org" = String, Path, description = "Organization id (org_…)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Key ids, provider, created, last rotated, next rotation, rotation progress", body = KeyStatusResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks security.settings", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> ApiResult<Json<KeyStatusResponse>> {
    Ok(Json(state.app.org_key_status(&caller.proof, org).await?.into()))
}
