//! API keys (`Authorization: Bearer pal_<env>_<base58><crc32>`): the format check that runs
//! before any database work. Properties: no panic; a well-formed key has our prefix, a valid
//! environment and a 32-byte random part; every minted key is well formed, and changing any one
//! character of its random part or checksum makes it ill-formed (the CRC-32 catches it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_auth::api_key::{API_KEY_PREFIX, looks_like_api_key, mint, valid_env, well_formed};
use palisade_fuzz::FixedRandomness;

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if well_formed(text) {
            assert!(looks_like_api_key(text));
            let rest = text.strip_prefix(API_KEY_PREFIX).expect("prefix");
            let (env, _) = rest.split_once('_').expect("env");
            assert!(valid_env(env), "{env:?}");
        }
    }
    // Minting: env from the first bytes, randomness from the rest, one character to change.
    let Some((&split, rest)) = data.split_first() else { return };
    let env_len = usize::from(split % 13).min(rest.len());
    let (env, rest) = rest.split_at(env_len);
    let Ok(env) = std::str::from_utf8(env) else { return };
    if !valid_env(env) || rest.len() < 2 {
        return;
    }
    let (change, random) = rest.split_at(2);
    let minted = mint(&FixedRandomness(random.to_vec()), env);
    let key = secrecy::ExposeSecret::expose_secret(&minted.secret).to_owned();
    assert!(well_formed(&key), "a minted key is refused: {key}");
    assert!(key.starts_with(&minted.prefix));
    let start = API_KEY_PREFIX.len() + env.len() + 1;
    let at = start + usize::from(change[0]) % (key.len() - start);
    let original = key.as_bytes()[at];
    let replacement = BASE58[usize::from(change[1]) % BASE58.len()];
    if replacement != original {
        // Both bytes are ASCII, so the text stays valid UTF-8.
        let mut bytes = key.into_bytes();
        bytes[at] = replacement;
        let typo = String::from_utf8(bytes).expect("ASCII");
        assert!(!well_formed(&typo), "a one-character typo passes the checksum: {typo}");
    }
});
