//! Typed, prefixed ids in the TypeID text form (`org_01h455vb4pex5vsknk084sn02q`), UUIDv7 inside.

use std::fmt;
use std::str::FromStr;

use typeid_suffix::prelude::TypeIdSuffix;
use uuid::Uuid;

use crate::clock::{Clock, Randomness};

/// Why a text id was refused. Callers turn this into "not found", never into a detailed 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {expected} id")]
pub struct IdParseError {
    pub expected: &'static str,
}

/// Mints a UUIDv7 from the injected clock and randomness.
pub fn new_uuid_v7(clock: &dyn Clock, random: &dyn Randomness) -> Uuid {
    let millis = (clock.now().unix_timestamp_nanos() / 1_000_000) as u64;
    let mut bytes = [0u8; 10];
    random.fill(&mut bytes);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

fn parse_typeid(text: &str, prefix: &'static str) -> Result<Uuid, IdParseError> {
    let err = IdParseError { expected: prefix };
    let suffix = text.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).ok_or_else(|| err.clone())?;
    if suffix.len() != 26 {
        return Err(err);
    }
    let decoded = TypeIdSuffix::from_str(suffix).map_err(|_| err.clone())?;
    let uuid = decoded.to_uuid();
    // Only our own UUIDv7 ids are valid; anything else cannot name an object of ours.
    if uuid.get_version_num() != 7 {
        return Err(err);
    }
    Ok(uuid)
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new(clock: &dyn Clock, random: &dyn Randomness) -> Self {
                Self(new_uuid_v7(clock, random))
            }

            /// Wraps a UUID read back from our own database.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, TypeIdSuffix::from(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_typeid(text, $prefix).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// An organization: the tenant.
    OrgId, "org"
);
typed_id!(
    /// A person's account, instance-wide.
    UserId, "usr"
);
typed_id!(
    /// A sign-in session.
    SessionId, "ses"
);
typed_id!(
    /// An audit event.
    EventId, "evt"
);
typed_id!(
    /// A record in an organization's collection.
    RecordId, "rec"
);
typed_id!(
    /// An API key.
    ApiKeyId, "key"
);
typed_id!(
    /// An invitation to join an organization.
    InvitationId, "inv"
);
typed_id!(
    /// A stored secret.
    SecretId, "sec"
);
typed_id!(
    /// A custom role.
    RoleId, "rol"
);
typed_id!(
    /// A user's WebAuthn credential (security key or passkey).
    CredentialId, "wac"
);
typed_id!(
    /// A data key (envelope encryption); the key itself is never shown, only its id.
    DataKeyId, "dek"
);

/// The TypeID prefixes of the kinds of object an audit event may name, by kind.
const KIND_PREFIXES: [(&str, &str); 9] = [
    ("user", "usr"),
    ("org", "org"),
    ("session", "ses"),
    ("record", "rec"),
    ("invitation", "inv"),
    ("api_key", "key"),
    ("secret", "sec"),
    ("role", "rol"),
    ("webauthn_credential", "wac"),
];

/// The text id of an object of `kind` (`user` → `usr_…`); an unknown kind gives the bare UUID.
pub fn typeid_of_kind(kind: &str, id: Uuid) -> String {
    match KIND_PREFIXES.iter().find(|(k, _)| *k == kind) {
        Some((_, prefix)) => format!("{prefix}_{}", TypeIdSuffix::from(id)),
        None => id.to_string(),
    }
}

/// The UUID inside any of our text ids, whatever its kind.
pub fn parse_any_typeid(text: &str) -> Option<Uuid> {
    KIND_PREFIXES.iter().find_map(|(_, prefix)| parse_typeid(text, prefix).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemRandomness};

    #[test]
    fn round_trips_and_matches_the_typeid_spec_vector() {
        // Vector from the TypeID specification: prefix_01h455vb4pex5vsknk084sn02q.
        let uuid = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let id = OrgId::from_uuid(uuid);
        assert_eq!(id.to_string(), "org_01h455vb4pex5vsknk084sn02q");
        assert_eq!("org_01h455vb4pex5vsknk084sn02q".parse::<OrgId>().unwrap(), id);
    }

    #[test]
    fn refuses_wrong_prefix_case_length_and_version() {
        assert!("usr_01h455vb4pex5vsknk084sn02q".parse::<OrgId>().is_err());
        assert!("org_01H455VB4PEX5VSKNK084SN02Q".parse::<OrgId>().is_err());
        assert!("org_01h455vb4pex5vsknk084sn02".parse::<OrgId>().is_err());
        assert!("org_".parse::<OrgId>().is_err());
        assert!("org01h455vb4pex5vsknk084sn02q".parse::<OrgId>().is_err());
        assert!("org_8zzzzzzzzzzzzzzzzzzzzzzzzz".parse::<OrgId>().is_err());
        // A valid TypeID whose UUID is not version 7.
        assert!("org_00000000000000000000000000".parse::<OrgId>().is_err());
    }

    #[test]
    fn every_kind_has_its_own_prefix() {
        let uuid = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let texts = [
            OrgId::from_uuid(uuid).to_string(),
            UserId::from_uuid(uuid).to_string(),
            SessionId::from_uuid(uuid).to_string(),
            EventId::from_uuid(uuid).to_string(),
            RecordId::from_uuid(uuid).to_string(),
            ApiKeyId::from_uuid(uuid).to_string(),
            InvitationId::from_uuid(uuid).to_string(),
            SecretId::from_uuid(uuid).to_string(),
            RoleId::from_uuid(uuid).to_string(),
        ];
        let prefixes: Vec<&str> = texts.iter().map(|t| t.split('_').next().unwrap()).collect();
        assert_eq!(prefixes, ["org", "usr", "ses", "evt", "rec", "key", "inv", "sec", "rol"]);
        assert!(texts[4].parse::<OrgId>().is_err(), "a record id is not an org id");
        assert_eq!(texts[4].parse::<RecordId>().unwrap().as_uuid(), uuid);
    }

    #[test]
    fn new_ids_carry_the_injected_time() {
        let start = time::macros::datetime!(2026-01-01 00:00 UTC);
        let clock = ManualClock::new(start);
        let id = UserId::new(&clock, &SystemRandomness);
        let (secs, _) = id.as_uuid().get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, start.unix_timestamp());
        assert!(id.to_string().starts_with("usr_"));
    }
}
