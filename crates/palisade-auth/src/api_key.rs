//! API key format: `pal_<env>_<random><checksum>`. The random part is 256 bits in base58 (no
//! look-alike characters, selectable with a double click); the checksum is the CRC-32 of
//! everything before it, 6 base58 characters, so a secret scanner can tell a real key from a
//! look-alike offline and we can refuse a mistyped key without a database round trip.

use palisade_core::Randomness;
use secrecy::SecretString;

pub const API_KEY_PREFIX: &str = "pal_";
const CHECKSUM_LEN: usize = 6;
/// Base58 of 32 bytes is 32 characters (all zero bytes: one '1' each) to 44 characters long.
/// The bounds follow from the format: a tighter lower bound refused minted keys whose random
/// bytes start with many zeros (found by fuzz/api_key).
const MIN_RANDOM_CHARS: usize = 32;
const MAX_RANDOM_CHARS: usize = 44;
/// How much of a key lists show: `pal_live_` and the first 8 random characters.
const SHOWN_RANDOM_CHARS: usize = 8;

/// A freshly minted key: the secret (shown once) and its displayable prefix.
pub struct MintedApiKey {
    pub secret: SecretString,
    pub prefix: String,
}

/// Is `env` usable in a key (`live`, `test`, `staging` …): 1–12 lower-case letters or digits.
pub fn valid_env(env: &str) -> bool {
    (1..=12).contains(&env.len()) && env.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn checksum(body: &str) -> String {
    let encoded = bs58::encode(crc32fast::hash(body.as_bytes()).to_be_bytes()).into_string();
    // base58 of 4 bytes is 5 or 6 characters; '1' is base58's zero, so left-padding keeps it exact.
    format!("{encoded:1>width$}", width = CHECKSUM_LEN)
}

/// Mints a key for environment `env` (checked by the caller with `valid_env`).
pub fn mint(random: &dyn Randomness, env: &str) -> MintedApiKey {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    random.fill(bytes.as_mut());
    let body = format!("{API_KEY_PREFIX}{env}_{}", bs58::encode(bytes.as_ref()).into_string());
    let prefix = body[..API_KEY_PREFIX.len() + env.len() + 1 + SHOWN_RANDOM_CHARS].to_owned();
    let secret = format!("{body}{}", checksum(&body));
    MintedApiKey { secret: secret.into(), prefix }
}

/// Whether `presented` looks like one of our keys (prefix) — then it is never tried as anything
/// else.
pub fn looks_like_api_key(presented: &str) -> bool {
    presented.starts_with(API_KEY_PREFIX)
}

/// Whether `presented` is a well-formed key with a correct checksum. Says nothing about whether
/// the key exists: that is the database's call.
pub fn well_formed(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(API_KEY_PREFIX) else { return false };
    let Some((env, random)) = rest.split_once('_') else { return false };
    if !valid_env(env)
        || random.len() < MIN_RANDOM_CHARS + CHECKSUM_LEN
        || random.len() > MAX_RANDOM_CHARS + CHECKSUM_LEN
        || !random.is_char_boundary(random.len() - CHECKSUM_LEN)
    {
        return false;
    }
    let body_len = presented.len() - CHECKSUM_LEN;
    let (body, sum) = presented.split_at(body_len);
    bs58::decode(&random[..random.len() - CHECKSUM_LEN]).into_vec().is_ok_and(|b| b.len() == 32)
        && checksum(body) == sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::SystemRandomness;
    use secrecy::ExposeSecret;

    #[test]
    fn minted_keys_are_well_formed_and_distinct() {
        let a = mint(&SystemRandomness, "live");
        let b = mint(&SystemRandomness, "test");
        assert!(well_formed(a.secret.expose_secret()), "{}", a.secret.expose_secret());
        assert!(well_formed(b.secret.expose_secret()));
        assert!(a.secret.expose_secret().starts_with("pal_live_"));
        assert!(b.secret.expose_secret().starts_with("pal_test_"));
        assert!(a.secret.expose_secret().starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), "pal_live_".len() + 8);
        assert_ne!(a.secret.expose_secret(), mint(&SystemRandomness, "live").secret.expose_secret());
    }

    /// Randomness that yields the same byte everywhere (the extreme case of leading zeros).
    struct Constant(u8);
    impl Randomness for Constant {
        fn fill(&self, dest: &mut [u8]) {
            dest.fill(self.0);
        }
    }

    #[test]
    fn every_minted_key_is_well_formed_whatever_the_random_bytes() {
        for byte in [0u8, 1, 0xff] {
            let key = mint(&Constant(byte), "pss");
            assert!(well_formed(key.secret.expose_secret()), "{}", key.secret.expose_secret());
        }
        assert!(!well_formed(&format!("pal_live_{}", "1".repeat(MAX_RANDOM_CHARS + CHECKSUM_LEN + 1))));
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        for _ in 0..200 {
            let key = mint(&SystemRandomness, "live");
            let key = key.secret.expose_secret();
            let mut chars: Vec<char> = key.chars().collect();
            let i = "pal_live_".len() + 3;
            chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
            let typo: String = chars.into_iter().collect();
            assert!(!well_formed(&typo), "{typo}");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for bad in [
            "",
            "pal_",
            "pal_live_",
            "pal_live",
            "pal__abc",
            "pal_LIVE_11111111111111111111111111111111111111111111111",
            "pal_live_ééééééééééééééééééééééééééééééééééééééééééé",
            "pal_live_0000000000000000000000000000000000000000000000",
            "pss_abc",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
