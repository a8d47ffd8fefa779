//! Collection schemas: JSON Schema draft 2020-12, compiled with no network or file access, a
//! size cap, and a linear-time regex engine with size limits (so a pattern cannot blow up), then
//! cached by schema id. Records are objects; their top-level properties are the fields that
//! filters and sorts may name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jsonschema::{Draft, PatternOptions, Retrieve, Uri};
use palisade_core::ValidationError;
use serde_json::Value;
use uuid::Uuid;

/// The largest schema accepted, serialized.
pub const SCHEMA_MAX_BYTES: usize = 64 * 1024;
/// The largest record `data` accepted, serialized.
pub const RECORD_MAX_BYTES: usize = 256 * 1024;
/// Compiled regexes may use at most this much memory each (the `regex` crate's limits).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Most violations listed for one record.
const MAX_VIOLATIONS: usize = 50;
/// Regexes are what makes a schema expensive to compile (a few hundred long patterns take
/// seconds of CPU and hundreds of MB), so a schema may hold only so many, so long.
const MAX_PATTERNS: usize = 64;
const MAX_PATTERN_CHARS: usize = 8 * 1024;
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// What a top-level field of a collection declares.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    /// The JSON type the schema gives it (`"type": "number"`), when it names exactly one.
    pub json_type: Option<String>,
    /// `x-palisade-sensitive: true`: masked for roles without records.sensitive_read, never
    /// filtered or sorted on.
    pub sensitive: bool,
    /// `x-palisade-pii: true`: personal data, for privacy requests.
    pub pii: bool,
}

/// A schema ready to check records.
pub struct CompiledSchema {
    validator: jsonschema::Validator,
    pub fields: BTreeMap<String, FieldInfo>,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema").field("fields", &self.fields).finish_non_exhaustive()
    }
}

/// Refuses every external reference: schemas are self-contained.
struct NoRemoteReferences;

impl Retrieve for NoRemoteReferences {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("remote references are not allowed ({uri})").into())
    }
}

fn invalid(pointer: &str, message: impl Into<String>) -> ValidationError {
    ValidationError { field: format!("/schema{pointer}"), message: message.into() }
}

/// Checks and compiles a collection schema. Errors point into the request body (`/schema/...`).
/// How many regular expressions a schema holds (`pattern` values and `patternProperties`
/// keys, at any depth), and their total length.
fn count_patterns(value: &Value) -> (usize, usize) {
    match value {
        Value::Object(map) => map.iter().fold((0, 0), |(n, chars), (key, inner)| {
            let own = match (key.as_str(), inner) {
                ("pattern", Value::String(p)) => (1, p.len()),
                ("patternProperties", Value::Object(props)) => (props.len(), props.keys().map(String::len).sum()),
                _ => (0, 0),
            };
            let (deep_n, deep_chars) = count_patterns(inner);
            (n + own.0 + deep_n, chars + own.1 + deep_chars)
        }),
        Value::Array(items) => items.iter().map(count_patterns).fold((0, 0), |(a, b), (c, d)| (a + c, b + d)),
        _ => (0, 0),
    }
}

pub fn compile(schema: &Value) -> Result<CompiledSchema, Vec<ValidationError>> {
    let size = serde_json::to_vec(schema).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > SCHEMA_MAX_BYTES {
        return Err(vec![invalid("", format!("is {size} bytes; the limit is {SCHEMA_MAX_BYTES}"))]);
    }
    let Some(object) = schema.as_object() else {
        return Err(vec![invalid("", "must be a JSON Schema object")]);
    };
    if object.get("type") != Some(&Value::String("object".into())) {
        return Err(vec![invalid("/type", "must be \"object\": a record is a JSON object")]);
    }
    if let Some(dialect) = object.get("$schema")
        && dialect.as_str() != Some(DRAFT_2020_12)
    {
        return Err(vec![invalid("/$schema", format!("only draft 2020-12 ({DRAFT_2020_12}) is supported"))]);
    }
    let (patterns, pattern_chars) = count_patterns(schema);
    if patterns > MAX_PATTERNS || pattern_chars > MAX_PATTERN_CHARS {
        return Err(vec![invalid(
            "",
            format!(
                "holds {patterns} regular expressions ({pattern_chars} characters); the limit is {MAX_PATTERNS} \
                 ({MAX_PATTERN_CHARS} characters)"
            ),
        )]);
    }
    let mut errors = Vec::new();
    let fields = match object.get("properties") {
        None => BTreeMap::new(),
        Some(Value::Object(properties)) => {
            properties.iter().map(|(name, property)| (name.clone(), field_info(name, property, &mut errors))).collect()
        }
        Some(_) => return Err(vec![invalid("/properties", "must be an object")]),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let validator = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_retriever(NoRemoteReferences)
        .with_pattern_options(PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT))
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| {
            let pointer = e.instance_path().as_str().to_owned();
            vec![invalid(&pointer, e.masked().to_string())]
        })?;
    Ok(CompiledSchema { validator, fields })
}

fn field_info(name: &str, property: &Value, errors: &mut Vec<ValidationError>) -> FieldInfo {
    let pointer = format!("/properties/{}", name.replace('~', "~0").replace('/', "~1"));
    let flag = |key: &str, errors: &mut Vec<ValidationError>| match property.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(invalid(&format!("{pointer}/{key}"), "must be true or false"));
            false
        }
    };
    let sensitive = flag("x-palisade-sensitive", errors);
    let pii = flag("x-palisade-pii", errors);
    let json_type = property.get("type").and_then(Value::as_str).map(str::to_owned);
    FieldInfo { json_type, sensitive, pii }
}

impl CompiledSchema {
    /// Every violation of `data` (up to 50), each at its JSON pointer under `/data`. Messages
    /// never quote the offending value: it may be a sensitive one.
    pub fn violations(&self, data: &Value) -> Vec<ValidationError> {
        self.validator
            .iter_errors(data)
            .take(MAX_VIOLATIONS)
            .map(|e| ValidationError {
                field: format!("/data{}", e.instance_path().as_str()),
                message: e.masked().to_string(),
            })
            .collect()
    }

    /// Names of fields marked sensitive.
    pub fn sensitive_fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().filter(|(_, f)| f.sensitive).map(|(name, _)| name.as_str())
    }
}

/// Compiled schemas by schema id, and the newest schema id seen per collection, so a write
/// usually needs one database round trip: it names the schema it checked against and the
/// database refuses (PASC1) if that is no longer current. Bounded: cleared when full.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<Uuid, Arc<CompiledSchema>>>,
    current: Mutex<HashMap<(Uuid, String), Uuid>>,
}

const CACHE_CAPACITY: usize = 4096;

impl SchemaCache {
    /// The compiled form of a stored schema (compiling it on first use).
    pub fn compiled(&self, schema_id: Uuid, schema: &Value) -> Result<Arc<CompiledSchema>, Vec<ValidationError>> {
        if let Some(hit) = self.lock_compiled().get(&schema_id) {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(compile(schema)?);
        let mut map = self.lock_compiled();
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(schema_id, compiled.clone());
        Ok(compiled)
    }

    /// The schema last seen for a collection, if it is still compiled here.
    pub fn current(&self, org: Uuid, collection: &str) -> Option<(Uuid, Arc<CompiledSchema>)> {
        let id = *self.lock_current().get(&(org, collection.to_owned()))?;
        let compiled = self.lock_compiled().get(&id)?.clone();
        Some((id, compiled))
    }

    pub fn remember(&self, org: Uuid, collection: &str, schema_id: Uuid) {
        let mut map = self.lock_current();
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert((org, collection.to_owned()), schema_id);
    }

    pub fn forget(&self, org: Uuid, collection: &str) {
        self.lock_current().remove(&(org, collection.to_owned()));
    }

    // A panic while holding these locks leaves only a cache behind: recover it.
    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<CompiledSchema>>> {
        self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, String), Uuid>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_patterns_are_refused_before_compiling() {
        let properties: serde_json::Map<String, Value> = (0..65)
            .map(|i| (format!("f{i}"), serde_json::json!({"type": "string", "pattern": format!("^a{i}$")})))
            .collect();
        let errors = compile(&serde_json::json!({"type": "object", "properties": properties})).err().unwrap();
        assert!(errors[0].message.contains("65 regular expressions"), "{errors:?}");
        let long = "x".repeat(MAX_PATTERN_CHARS + 1);
        let nested = serde_json::json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "pattern": long}}}});
        assert!(compile(&nested).is_err(), "a pattern at any depth counts");
        let fine = serde_json::json!({"type": "object", "patternProperties": {"^x_": {"type": "string"}}});
        assert!(compile(&fine).is_ok());
    }
    use serde_json::json;

    #[test]
    fn schemas_are_checked_before_use() {
        let ok = compile(&json!({"type": "object", "properties": {"title": {"type": "string"},
            "salary": {"type": "number", "x-palisade-sensitive": true}}, "required": ["title"]}))
        .unwrap();
        assert_eq!(ok.sensitive_fields().collect::<Vec<_>>(), ["salary"]);
        assert!(ok.violations(&json!({"title": "a", "salary": 3})).is_empty());
        let v = ok.violations(&json!({"salary": "secret-value"}));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|e| !e.message.contains("secret-value")), "{v:?}");
        assert!(v.iter().any(|e| e.field == "/data/salary"));

        let refused = |schema: Value| compile(&schema).unwrap_err();
        assert_eq!(refused(json!([]))[0].field, "/schema");
        assert_eq!(refused(json!({"type": "string"}))[0].field, "/schema/type");
        refused(json!({"type": "object", "$ref": "https://example.com/evil.json"}));
        refused(json!({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}));
        refused(json!({"type": "object", "properties": {"a": {"type": "nope"}}}));
        refused(json!({"type": "object", "properties": {"a": {"x-palisade-sensitive": "yes"}}}));
        // Backreferences and lookaround need backtracking: refused, not run.
        refused(json!({"type": "object", "properties": {"a": {"pattern": "^(a+)+\\1$"}}}));
        refused(json!({"type": "object", "properties": {"a": {"pattern": "(?=a)"}}}));
        // A pattern that would compile to a huge automaton is refused too.
        refused(json!({"type": "object", "properties": {"a": {"pattern": "\\w{1000}{1000}"}}}));
        let huge = "x".repeat(SCHEMA_MAX_BYTES);
        refused(json!({"type": "object", "description": huge}));
    }

    #[test]
    fn a_classic_catastrophic_pattern_runs_in_linear_time() {
        let schema =
            compile(&json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}})).unwrap();
        let evil = format!("{}!", "a".repeat(100_000));
        assert_eq!(schema.violations(&json!({"a": evil})).len(), 1);
    }
}
