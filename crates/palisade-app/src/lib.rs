//! Use cases: one function per action, each = validate → authorize → write + audit in one
//! transaction. Nothing here knows about HTTP.

mod access_events;
mod accounts;
mod api_keys;
mod audit;
pub mod audit_verify;
pub mod bearer_key;
mod collections;
mod edge;
mod email_flows;
mod error;
pub mod import;
pub mod key_rotation;
pub mod keyring;
mod mail;
mod members;
mod mfa;
mod org_deletion;
mod orgs;
mod record_query;
mod records;
mod roles;
mod schema;
mod sealed_fields;
mod secrets;
mod security;
mod token_keys;
mod tokens;
pub mod webauthn;

/// The pure parsers of untrusted input behind list parameters, cursors and collection schemas,
/// for the fuzz targets in `fuzz/`. Not an API: nothing outside the fuzz crate uses it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::record_query::{
        Parsed as ListParameters, cursor_context, open_cursor, parse as parse_list_parameters, seal_cursor,
    };
    pub use crate::schema::{CompiledSchema, FieldInfo, compile as compile_schema};
}

use std::sync::Arc;

use palisade_auth::PasswordHasher;
use palisade_core::{Clock, Randomness};
use palisade_store::Db;

pub use accounts::{LoginInput, LoginOutcome, SignupInput};
pub use api_keys::{ApiKeyInput, IssuedApiKey, MAX_ROTATION_OVERLAP_MINUTES};
pub use audit::{AuditExport, CHECKPOINT_EVERY, CHECKPOINT_EVERY_EVENTS, EventPage, ExportSlots};
pub use audit_verify::{Anchor, CheckpointDocument, Report};
pub use collections::IncompatibleRecords;
pub use edge::OrgEdge;
pub use error::AppError;
pub use key_rotation::{KeyStatus, ROTATION_BATCH, RotationProgress};
pub use mfa::{BACKUP_CODES, TotpEnrollment};
pub use orgs::OrgPatch;
pub use palisade_store::repo::api_keys::ApiKeyRow;
pub use palisade_store::repo::audit::RequestMeta;
pub use palisade_store::repo::audit::{EventQuery, EventRow, RawEvent};
pub use palisade_store::repo::audit_chain::{Checkpoint, Verdict, checkpoint_message, checkpoint_time};
pub use palisade_store::repo::collections::Collection;
pub use palisade_store::repo::members::Invitation;
pub use palisade_store::repo::orgs::{Member, Org};
pub use palisade_store::repo::records::Record;
pub use palisade_store::repo::roles::{CustomRole, ReviewRow};
pub use palisade_store::repo::secrets::SecretRow;
pub use palisade_store::repo::sessions::SessionInfo;
pub use palisade_store::repo::users::{Lockout, Me};
pub use palisade_store::repo::webauthn::CredentialInfo;
pub use record_query::{MAX_PAGE, RecordPage};
pub use records::{ConcealedRecord, RecordInput, RecordUpdate, RecordView};
pub use roles::RoleInput;
pub use schema::{RECORD_MAX_BYTES, SCHEMA_MAX_BYTES, SchemaCache};
pub use secrets::SECRET_MAX_BYTES;
pub use security::STEP_UP_WINDOW;
pub use token_keys::{PublishedKey, TokenKeys, VerifiedAccess};
pub use tokens::{LoginOutput, TokenGrant};

/// Instance-wide settings the use cases need.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Absolute lifetime of a browser (cookie) session.
    pub session_lifetime: time::Duration,
    /// Absolute lifetime of a refresh-token family (the API-client side of a session).
    pub refresh_lifetime: time::Duration,
    /// Lifetime of an access token (a signed JWT).
    pub access_token_ttl: time::Duration,
    /// How often the access-token signing key is replaced on schedule.
    pub signing_key_rotation: time::Duration,
    /// A session unused for this long stops working.
    pub session_idle_timeout: time::Duration,
    /// Consecutive failed sign-ins that lock an account, and for how long.
    pub lockout: Lockout,
    /// How long an email verification link works.
    pub verification_valid_for: time::Duration,
    /// How long a password reset link works.
    pub reset_valid_for: time::Duration,
    /// The URL people reach this server at, for links in emails.
    pub public_url: String,
    /// The most collections one organization may hold.
    pub collections_per_org: i32,
    /// The most records, and bytes of record data, one organization may hold.
    pub record_quota: palisade_store::repo::records::RecordQuota,
    /// The `<env>` in API keys minted here (`pal_<env>_…`): tells a leaked key's origin.
    pub api_key_env: String,
    /// Each organization's data key is replaced (and its values re-encrypted) this often.
    pub data_key_rotation: time::Duration,
    /// How long a scheduled organization deletion can still be cancelled.
    pub org_deletion_grace: time::Duration,
    /// The instance chain's retention this server was configured with, if any: it never purges
    /// instance events younger than this, whatever the database holds (which rules otherwise).
    pub instance_audit_retention_days: Option<i32>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            session_lifetime: time::Duration::hours(12),
            refresh_lifetime: time::Duration::days(30),
            access_token_ttl: time::Duration::minutes(15),
            signing_key_rotation: time::Duration::days(30),
            session_idle_timeout: time::Duration::minutes(30),
            lockout: Lockout { threshold: 6, duration: time::Duration::minutes(15) },
            verification_valid_for: time::Duration::hours(48),
            reset_valid_for: time::Duration::minutes(30),
            public_url: "http://127.0.0.1:8080".into(),
            collections_per_org: 100,
            record_quota: palisade_store::repo::records::RecordQuota { records: 1_000_000, bytes: 1 << 30 },
            api_key_env: "live".into(),
            data_key_rotation: time::Duration::days(365),
            org_deletion_grace: time::Duration::days(7),
            instance_audit_retention_days: None,
        }
    }
}

/// Everything a use case may touch. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    /// The key jobs' own pool (the `<runtime role>_keys` login): rotation, rewrapping and
    /// shredding run over it, never over `db`, whose role may not execute those functions.
    /// `None` where no such connection is configured: those jobs then refuse with a hint.
    pub key_jobs: Option<Db>,
    /// The sign-in pool (the `<runtime role>_signin` login): the transactions that open a
    /// session run over it, since `db`'s role may not insert sessions (0036). `None` where no
    /// such connection is configured: sign-ins then fail with a hint (`serve` refuses to start).
    pub sign_in: Option<Db>,
    /// The current bearer key (0037), read through `sign_in` at start and every second after
    /// (`load_bearer_key`): access-token callers prove their session to the database with its MAC.
    pub bearer_key: Arc<std::sync::RwLock<Option<bearer_key::LoadedBearerKey>>>,
    pub hasher: PasswordHasher,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
    pub policy: Policy,
    pub mailer: palisade_mail::Mailer,
    /// Seals user-owned secrets (TOTP seeds) at rest.
    pub keys: Arc<palisade_crypto::InstanceKey>,
    /// Data keys (organizations' and the instance's), unwrapped through the key provider.
    pub keyring: Arc<keyring::Keyring>,
    /// Compiled collection schemas (see `schema::SchemaCache`).
    pub schemas: Arc<SchemaCache>,
    /// The audit checkpoint signing key, loaded (or created) on first use.
    pub audit_key: Arc<tokio::sync::OnceCell<Arc<palisade_crypto::signing::KeyPair>>>,
    /// Access-token signing and verification keys as this node knows them.
    pub tokens: Arc<TokenKeys>,
    /// The WebAuthn relying party (id and origin from the configuration).
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// The shape of a sign-in ceremony's options, for decoys (see `webauthn::decoy_template`).
    pub decoy_template: Arc<serde_json::Value>,
    /// Organizations' plan tiers and allowed origins as this node last read them (`edge`).
    pub edge: Arc<edge::EdgeCache>,
    /// The audit events of sensitive reads waiting to be written together (`access_events`).
    pub access_events: Arc<access_events::AccessEvents>,
    /// Room for concurrent audit exports on this node (`audit::ExportSlots`).
    pub export_slots: Arc<audit::ExportSlots>,
}

impl App {
    /// The pool the key keeper's jobs run over, or why there is none.
    pub(crate) fn key_jobs_db(&self) -> Result<&Db, AppError> {
        self.key_jobs.as_ref().ok_or_else(|| {
            AppError::Unavailable(
                "key rotation and shredding need the key jobs' connection: set PALISADE_DATABASE_KEYS_URL \
                 (the `<runtime role>_keys` login `palisade migrate` creates)"
                    .into(),
            )
        })
    }

    /// The pool that may open sessions, or why there is none.
    pub(crate) fn sign_in_db(&self) -> Result<&Db, AppError> {
        self.sign_in.as_ref().ok_or_else(|| {
            AppError::Unavailable(
                "signing in needs the sign-in connection: set PALISADE_DATABASE_SIGNIN_URL (the \
                 `<runtime role>_signin` login `palisade migrate` creates)"
                    .into(),
            )
        })
    }

    /// An audit event happening now, by the session's user unless the builder says otherwise.
    pub(crate) fn audit<'a>(
        &self,
        action: &'static str,
        meta: &'a RequestMeta,
    ) -> palisade_store::repo::audit::NewEvent<'a> {
        palisade_store::repo::audit::NewEvent::new(
            palisade_core::EventId::new(&*self.clock, &*self.random),
            self.clock.now(),
            action,
            meta,
        )
    }

    /// Ready to serve: the database answers and carries exactly the schema this build expects.
    pub async fn readiness(&self) -> Result<(), AppError> {
        let applied = self.db.applied_migration_version().await?;
        let expected = palisade_store::migrate::latest_version();
        if applied == expected {
            Ok(())
        } else {
            Err(AppError::Unavailable(format!(
                "database schema is at migration {applied}, this build expects {expected}"
            )))
        }
    }
}
