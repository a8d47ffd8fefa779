//! Pagination cursors: what a client sends back as `cursor=`. Two properties:
//! - any text: opening it never panics, and a cursor that opens re-seals into one that opens to
//!   the same place, and does not open under another listing's context (other sort or order);
//! - round trip: a cursor sealed for a record id and any JSON sort key opens to exactly them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_app::fuzzing::{open_cursor, seal_cursor};
use serde_json::Value;

const CONTEXT: &[u8] = b"palisade-cursor-v1|org_00000000000000000000000000|fuzzed|amount|asc";
const OTHER: &[u8] = b"palisade-cursor-v1|org_00000000000000000000000000|fuzzed|amount|desc";

fuzz_target!(|data: &[u8]| {
    let keys = palisade_fuzz::instance_key();
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        if let Some(after) = open_cursor(keys, CONTEXT, text) {
            assert!(open_cursor(keys, OTHER, text).is_none(), "a cursor opened under another sort");
            let again = seal_cursor(keys, CONTEXT, after.id.as_uuid(), after.key.clone());
            let reopened = open_cursor(keys, CONTEXT, &again).expect("a re-sealed cursor opens");
            assert_eq!((reopened.id, reopened.key), (after.id, after.key));
        }
    } else {
        if rest.len() < 16 {
            return;
        }
        let (id, key) = rest.split_at(16);
        let id = uuid::Uuid::from_slice(id).expect("16 bytes");
        let Ok(key) = serde_json::from_slice::<Value>(key) else { return };
        let text = seal_cursor(keys, CONTEXT, id, key.clone());
        let after = open_cursor(keys, CONTEXT, &text).expect("a sealed cursor opens");
        assert_eq!(after.id.as_uuid(), id);
        assert_eq!(after.key, key, "the sort key changed on its way through a cursor");
        assert!(open_cursor(keys, OTHER, &text).is_none(), "a cursor opened under another sort");
    }
});
