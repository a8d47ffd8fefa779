//! Access tokens (`Authorization: Bearer <jwt>`), verified as the API does before anything else.
//! Properties:
//! - any text: no panic, and nothing verifies unless every part is canonical base64url and the
//!   claims name our issuer and audience and have not expired (a forged or re-encoded token
//!   would be a second spelling of a credential);
//! - any claims JSON signed with the real key and header: it verifies exactly when it is a
//!   complete access token for us that has not expired, and then to those claims.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use palisade_auth::jwt::{ACCESS_TOKEN_TYP, AccessClaims};
use palisade_fuzz::{AUDIENCE, ISSUER, KID, NOW, signer, verifier};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else { return };
        if let Ok(claims) = verifier().verify(token, NOW) {
            for part in token.split('.') {
                let bytes = URL_SAFE_NO_PAD.decode(part).expect("a verified token is base64url");
                assert_eq!(URL_SAFE_NO_PAD.encode(bytes), part, "non-canonical base64url accepted");
            }
            assert!(claims.iss == ISSUER && claims.aud == AUDIENCE && claims.exp > NOW, "{claims:?}");
        }
    } else {
        let Ok(payload) = serde_json::from_slice::<Value>(rest) else { return };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(KID.into());
        let token = signer().sign_with_header(&header, &payload);
        let expected = serde_json::from_value::<AccessClaims>(payload.clone())
            .ok()
            .filter(|c| c.iss == ISSUER && c.aud == AUDIENCE && c.exp > NOW)
            // Longer tokens are refused unread.
            .filter(|_| token.len() <= 4096);
        match (verifier().verify(&token, NOW), expected) {
            (Ok(claims), Some(expected)) => assert_eq!(claims, expected),
            (Err(_), None) => {}
            (got, expected) => panic!("verify gave {got:?} for claims {payload}; expected {expected:?}"),
        }
    }
});
