//! Collection schemas (`POST /orgs/{org}/collections`, `PUT .../schema`): a JSON document from
//! the client, compiled as JSON Schema 2020-12 with no remote references and linear-time regexes.
//! Properties: no panic, no hang (libFuzzer's -timeout); an accepted schema describes exactly
//! its declared top-level properties, and checking records against it never panics and lists at
//! most 50 violations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_app::fuzzing::compile_schema;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    // The API reads the body with serde_json; anything larger than the 64 KiB cap is refused first.
    if data.len() > 70 * 1024 {
        return;
    }
    let Ok(document) = serde_json::from_slice::<Value>(data) else { return };
    // The schema is usually the `schema` member of the request body; the fuzzer may give either.
    let schema = document.get("schema").cloned().unwrap_or(document);
    let Ok(compiled) = compile_schema(&schema) else { return };
    let declared = schema.get("properties").and_then(Value::as_object).map_or(0, |p| p.len());
    assert_eq!(compiled.fields.len(), declared, "fields are the declared top-level properties");
    for record in [json!({}), json!({"a": 1, "b": "x", "c": [true, null]}), json!([]), schema.clone()] {
        assert!(compiled.violations(&record).len() <= 50);
    }
});
