//! Domain types shared by every layer: typed ids, parsed values, roles, the clock. No I/O, no async.

pub mod clock;
pub mod ids;
pub mod net;
pub mod plan;
pub mod role;
pub mod values;

pub use clock::{Clock, ManualClock, Randomness, SystemClock, SystemRandomness};
pub use ids::{
    ApiKeyId, CredentialId, DataKeyId, EventId, IdParseError, InvitationId, OrgId, RecordId, RoleId, SecretId,
    SessionId, UserId, parse_any_typeid, typeid_of_kind,
};
pub use plan::Plan;
pub use role::{OrgRole, Permission};
pub use values::{CollectionName, Email, OrgName, Password, PersonName, ValidationError};
pub mod session;
pub use session::{SessionProof, SessionTokenHash};
