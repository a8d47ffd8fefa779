//! The file of `palisade users import --file F` (accounts from another system). Properties: no
//! panic; an accepted file has unique addresses and importable bcrypt hashes, and written back
//! (normalized) it is accepted again as the same accounts; a refused file says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_app::import::parse_users;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_users(text) {
        Ok(users) => {
            let mut seen = std::collections::HashSet::new();
            for user in &users {
                assert!(seen.insert(user.email.as_str().to_owned()), "duplicate address accepted");
                assert!(palisade_auth::is_importable_bcrypt(&user.bcrypt_hash));
            }
            let written: Vec<_> = users
                .iter()
                .map(|u| {
                    json!({"email": u.email.as_str(), "name": u.name.as_str(),
                           "password_hash": u.bcrypt_hash, "email_verified": u.email_verified})
                })
                .collect();
            let again = parse_users(&serde_json::to_string(&written).expect("JSON"))
                .unwrap_or_else(|e| panic!("normalized file refused: {e}"));
            assert_eq!(again.len(), users.len());
            for (a, b) in again.iter().zip(&users) {
                assert_eq!(a.email.as_str(), b.email.as_str());
                assert_eq!(a.name.as_str(), b.name.as_str());
                assert_eq!((&a.bcrypt_hash, a.email_verified), (&b.bcrypt_hash, b.email_verified));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
