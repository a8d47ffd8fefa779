//! Opaque tokens from clients: session cookies (`pss_`), refresh tokens (`prf_`), email links
//! (`pev_`, `prt_`, `pce_`) — hashed, never parsed — and invitations (`pin_`), which carry
//! their organization's id. Properties: no panic; hashing is a function of the text alone; an
//! invitation token names an organization only when it is `pin_` + 48 base64url bytes, and a
//! minted invitation always names its own.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use palisade_auth::token::{INVITATION_TOKEN_PREFIX, hash_token, invitation_org, mint_invitation};
use palisade_fuzz::FixedRandomness;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(hash_token(text), hash_token(&text.to_owned()));
        if let Some(org) = invitation_org(text) {
            let encoded = text.strip_prefix(INVITATION_TOKEN_PREFIX).expect("pin_ prefix");
            let bytes = URL_SAFE_NO_PAD.decode(encoded).expect("base64url");
            assert_eq!(bytes.len(), 48);
            assert_eq!(&bytes[..16], &org);
        }
    }
    if data.len() >= 16 {
        let org: [u8; 16] = data[..16].try_into().expect("16 bytes");
        let minted = mint_invitation(&FixedRandomness(data[16..].to_vec()), org);
        assert_eq!(invitation_org(minted.expose()), Some(org));
        assert_eq!(hash_token(minted.expose()), minted.hash);
    }
});
