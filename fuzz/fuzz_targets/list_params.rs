//! Record list parameters (`GET /orgs/{org}/collections/{name}/records?filter[f][op]=v&sort=-f&limit=n&cursor=c`):
//! the raw query string, read the way the API reads it, checked against a collection schema.
//! Properties: no panic; an accepted query only filters and sorts on declared, non-sensitive
//! fields, with known operators, values typed as the schema says, within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_app::fuzzing::{cursor_context, parse_list_parameters};
use palisade_core::{CollectionName, OrgId};
use serde_json::Value;

const OPERATORS: [&str; 7] = ["eq", "ne", "gt", "gte", "lt", "lte", "in"];

fn type_matches(json_type: Option<&str>, value: &Value) -> bool {
    match json_type {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64(),
        Some("number") => value.as_f64().is_some_and(f64::is_finite),
        Some("boolean") => value.is_boolean(),
        _ => !value.is_array() && !value.is_object(),
    }
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let schema = palisade_fuzz::list_schema();
    match parse_list_parameters(&pairs, schema) {
        Ok(parsed) => {
            assert!((1..=200).contains(&parsed.limit), "limit {}", parsed.limit);
            assert!(parsed.filters.len() <= 20, "{} filters", parsed.filters.len());
            for filter in &parsed.filters {
                let info = schema.fields.get(&filter.field).expect("filters name declared fields");
                assert!(!info.sensitive, "filter on sensitive field {}", filter.field);
                assert!(OPERATORS.contains(&filter.op), "operator {}", filter.op);
                if filter.op == "in" {
                    let items = filter.value.as_array().expect("`in` takes a list");
                    assert!(!items.is_empty() && items.len() <= 100);
                    assert!(
                        items.iter().all(|v| type_matches(info.json_type.as_deref(), v)),
                        "{} {} {}",
                        filter.field,
                        filter.op,
                        filter.value
                    );
                } else {
                    assert!(
                        type_matches(info.json_type.as_deref(), &filter.value),
                        "{} {} {}",
                        filter.field,
                        filter.op,
                        filter.value
                    );
                }
            }
            if let Some(field) = &parsed.sort_field {
                let info = schema.fields.get(field).expect("sorts name declared fields");
                assert!(!info.sensitive, "sort on sensitive field {field}");
            }
            let org = OrgId::from_uuid(uuid::Uuid::nil());
            let name = CollectionName::parse("fuzzed").expect("collection name");
            let context = cursor_context(org, &name, &parsed);
            assert!(context.starts_with(b"palisade-cursor-v1|"));
        }
        Err(errors) => assert!(!errors.is_empty(), "a refusal names at least one parameter"),
    }
});
