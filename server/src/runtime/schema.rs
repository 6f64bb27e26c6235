//! JSON Schema checks of values against an OpenAPI document's schemas, with `boon`: the
//! one way Taproom checks JSON against a spec (requests in `extract`, the mock server's
//! answers and generated values in `mock`).
//!
//! OpenAPI 3.0 schemas are a draft-4 dialect; formats are asserted (`uuid`, `date-time`,
//! `email`, `uri`, …; formats boon does not know, such as `password` or `int64`, assert
//! nothing). Violations are reported in Taproom's own words, one per failing value, and
//! never repeat a submitted string back: it may be a password.

use super::problem::FieldError;
use boon::{Compiler, Draft, ErrorKind, SchemaIndex, Schemas, UrlLoader, ValidationError};
use serde_json::{Map, Value};

/// A compiled schema.
pub struct Validator {
    schemas: Schemas,
    index: SchemaIndex,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

/// Refuses every reference outside the document: a spec must not make the server read
/// files or fetch URLs while compiling its checks.
struct NoExternalReferences;

impl UrlLoader for NoExternalReferences {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url}: only references inside the document (#/...) are resolved").into())
    }
}

/// Where the compiled document lives, for boon's reference resolution only.
const DOCUMENT: &str = "http://taproom.invalid/openapi.json";

/// Compiles `schema`, resolving `#/components/...` against `spec`.
pub fn compile(spec: &Value, schema: &Value) -> anyhow::Result<Validator> {
    // The schema sits in a document that carries the spec's components along, so that
    // its local `$ref`s resolve as they do in the spec. Draft 4 has no boolean schemas:
    // `true` (no schema declared) is `{}`.
    let schema = match schema {
        Value::Bool(true) => Value::Object(Map::new()),
        other => other.clone(),
    };
    let mut root = Map::new();
    root.insert("allOf".into(), Value::Array(vec![schema]));
    if let Some(components) = spec.get("components") {
        root.insert("components".into(), components.clone());
    }
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V4);
    compiler.enable_format_assertions();
    compiler.use_loader(Box::new(NoExternalReferences));
    compiler
        .add_resource(DOCUMENT, Value::Object(root))
        .map_err(|e| anyhow::anyhow!("compiling schema: {e:#}"))?;
    let mut schemas = Schemas::new();
    let index = compiler
        .compile(DOCUMENT, &mut schemas)
        .map_err(|e| anyhow::anyhow!("compiling schema: {e:#}"))?;
    Ok(Validator { schemas, index })
}

impl Validator {
    /// Whether `instance` satisfies the schema.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.schemas.validate(instance, self.index).is_ok()
    }

    /// Every violation of the schema by `instance`, with pointers prefixed by `prefix`.
    pub fn violations(&self, instance: &Value, prefix: &str, out: &mut Vec<FieldError>) {
        if let Err(error) = self.schemas.validate(instance, self.index) {
            collect(&error, prefix, out);
        }
    }
}

/// A pointer token (RFC 6901).
fn token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The leaves of boon's error tree, one `FieldError` per failing value: the nodes that
/// only group their causes (the schema, `allOf`, a `$ref`, several errors at one place)
/// are looked through; `anyOf`/`oneOf` are reported where they fail, not once per
/// alternative.
fn collect(error: &ValidationError, prefix: &str, out: &mut Vec<FieldError>) {
    let pointer = format!("{prefix}{}", error.instance_location);
    let mut push = |pointer: String, message: String| out.push(FieldError { pointer, message });
    match &error.kind {
        ErrorKind::Group
        | ErrorKind::Schema { .. }
        | ErrorKind::Reference { .. }
        | ErrorKind::AllOf
        | ErrorKind::ContentSchema => {
            for cause in &error.causes {
                collect(cause, prefix, out);
            }
        }
        ErrorKind::Required { want } => {
            for name in want {
                push(format!("{pointer}/{}", token(name)), "is required".into());
            }
        }
        ErrorKind::AdditionalProperties { got } => {
            for name in got {
                push(
                    format!("{pointer}/{}", token(name)),
                    "is not a known field".into(),
                );
            }
        }
        ErrorKind::Dependency { prop, missing }
        | ErrorKind::DependentRequired { prop, missing } => {
            for name in missing {
                push(
                    format!("{pointer}/{}", token(name)),
                    format!("is required when {} is present", quoted([*prop])),
                );
            }
        }
        ErrorKind::Type { want, .. } => push(
            pointer,
            format!(
                "value is not of type {}",
                quoted(want.iter().map(type_name))
            ),
        ),
        ErrorKind::Enum { want } => push(
            pointer,
            format!("value is not one of {}", shown(want.iter())),
        ),
        ErrorKind::Const { want } => push(
            pointer,
            format!("value is not {}", shown([*want].into_iter())),
        ),
        ErrorKind::Format { want, .. } => push(pointer, format!("value is not a {want:?}")),
        ErrorKind::Pattern { want, .. } => push(pointer, format!("value does not match {want:?}")),
        ErrorKind::MinLength { want, .. } => {
            push(pointer, format!("value is shorter than {want} characters"))
        }
        ErrorKind::MaxLength { want, .. } => {
            push(pointer, format!("value is longer than {want} characters"))
        }
        ErrorKind::Minimum { want, .. } => push(pointer, format!("value is less than {want}")),
        ErrorKind::Maximum { want, .. } => push(pointer, format!("value is greater than {want}")),
        ErrorKind::ExclusiveMinimum { want, .. } => {
            push(pointer, format!("value is less than or equal to {want}"))
        }
        ErrorKind::ExclusiveMaximum { want, .. } => {
            push(pointer, format!("value is greater than or equal to {want}"))
        }
        ErrorKind::MultipleOf { want, .. } => {
            push(pointer, format!("value is not a multiple of {want}"))
        }
        ErrorKind::MinItems { want, .. } => {
            push(pointer, format!("value has fewer than {want} items"))
        }
        ErrorKind::MaxItems { want, .. } => {
            push(pointer, format!("value has more than {want} items"))
        }
        ErrorKind::AdditionalItems { .. } => {
            push(pointer, "value has more items than allowed".into())
        }
        ErrorKind::UniqueItems { got: [i, j] } => {
            push(pointer, format!("value has equal items at {i} and {j}"))
        }
        ErrorKind::MinProperties { want, .. } => {
            push(pointer, format!("value has fewer than {want} properties"))
        }
        ErrorKind::MaxProperties { want, .. } => {
            push(pointer, format!("value has more than {want} properties"))
        }
        ErrorKind::Contains | ErrorKind::MinContains { .. } | ErrorKind::MaxContains { .. } => {
            push(pointer, "value does not have the items required".into())
        }
        ErrorKind::AnyOf | ErrorKind::OneOf(None) => push(
            pointer,
            "value does not match any of the allowed schemas".into(),
        ),
        ErrorKind::OneOf(Some(_)) => push(
            pointer,
            "value matches more than one of the allowed schemas".into(),
        ),
        ErrorKind::Not => push(pointer, "value matches a schema it must not".into()),
        ErrorKind::FalseSchema => push(pointer, "value is not allowed here".into()),
        ErrorKind::PropertyName { prop } => push(
            format!("{pointer}/{}", token(prop)),
            "is not an allowed field name".into(),
        ),
        ErrorKind::ContentEncoding { .. } | ErrorKind::ContentMediaType { .. } => {
            push(pointer, "value is not of the declared content".into())
        }
        ErrorKind::RefCycle { .. } => push(pointer, "the schema refers to itself in a loop".into()),
    }
}

/// Names from the schema (property names, types), each in quotes.
fn quoted<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<String> = names
        .into_iter()
        .map(|n| serde_json::to_string(n).unwrap_or_default())
        .collect();
    all.join(", ")
}

fn type_name(t: boon::Type) -> &'static str {
    match t {
        boon::Type::Null => "null",
        boon::Type::Boolean => "boolean",
        boon::Type::Number => "number",
        boon::Type::Integer => "integer",
        boon::Type::String => "string",
        boon::Type::Array => "array",
        boon::Type::Object => "object",
    }
}

/// Values from the schema (an enum's, a const): shown when they are short scalars.
fn shown<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    let all: Vec<String> = values
        .map(|v| match v {
            Value::Array(_) | Value::Object(_) => "a structure".to_string(),
            _ => v.to_string(),
        })
        .collect();
    all.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({"components": {"schemas": {
            "Id": {"type": "string", "format": "uuid"},
            "Thing": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "name"],
                "properties": {
                    "id": {"$ref": "#/components/schemas/Id"},
                    "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                    "email": {"type": "string", "format": "email"},
                    "at": {"type": "string", "format": "date-time"},
                    "home": {"type": "string", "format": "uri"},
                    "secret": {"type": "string", "format": "password", "minLength": 8},
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0},
                    "kind": {"type": "string", "enum": ["ale", "lager"]},
                    "tags": {"type": "array", "maxItems": 2, "uniqueItems": true,
                             "items": {"type": "string"}},
                    "a~b/c": {"type": "boolean"}
                }
            }
        }}})
    }

    fn errors(schema: Value, instance: Value) -> Vec<(String, String)> {
        let validator = compile(&spec(), &schema).unwrap();
        let mut out = Vec::new();
        validator.violations(&instance, "", &mut out);
        assert_eq!(validator.is_valid(&instance), out.is_empty());
        let mut pairs: Vec<_> = out.into_iter().map(|e| (e.pointer, e.message)).collect();
        pairs.sort();
        pairs
    }

    fn thing() -> Value {
        json!({"$ref": "#/components/schemas/Thing"})
    }

    #[test]
    fn a_valid_value_has_no_violations() {
        let ok = json!({"id": "0190c5a4-7a1e-7000-8000-000000000001", "name": "hops",
            "email": "a@example.com", "at": "2026-11-30T12:00:00Z", "home": "https://x.example/a",
            "secret": "long enough", "size": 3, "ratio": 0.5, "kind": "ale", "tags": ["a", "b"],
            "a~b/c": true});
        assert_eq!(errors(thing(), ok), vec![]);
    }

    #[test]
    fn every_violation_is_reported_at_its_own_pointer() {
        let bad = json!({"name": "X", "email": "not an email", "at": "yesterday",
            "home": "no scheme", "secret": "short", "size": 11, "ratio": 0, "kind": "stout",
            "tags": ["a", "a", "b"], "a~b/c": 1, "extra": 1});
        let found = errors(thing(), bad);
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/at", "/a~0b~1c", "/email", "/extra", "/home", "/id", "/kind", "/name", "/name",
                "/ratio", "/secret", "/size", "/tags", "/tags",
            ],
            "{found:?}"
        );
        let message = |p: &str| {
            found
                .iter()
                .filter(|(q, _)| q == p)
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(message("/id"), ["is required"]);
        assert_eq!(message("/extra"), ["is not a known field"]);
        assert_eq!(message("/email"), [r#"value is not a "email""#]);
        assert_eq!(message("/secret"), ["value is shorter than 8 characters"]);
        assert_eq!(message("/size"), ["value is greater than 10"]);
        assert_eq!(message("/ratio"), ["value is less than or equal to 0"]);
        assert_eq!(message("/a~0b~1c"), [r#"value is not of type "boolean""#]);
        assert_eq!(message("/kind"), [r#"value is not one of "ale", "lager""#]);
    }

    #[test]
    fn messages_never_repeat_a_submitted_string() {
        let secret = "hunter2-Secret";
        let bad = json!({"id": secret, "name": secret, "email": secret, "at": secret,
            "home": secret, "secret": "s3cr", "kind": secret, "tags": [secret, secret]});
        for (pointer, message) in errors(thing(), bad) {
            assert!(!message.contains("hunter2"), "{pointer}: {message}");
            assert!(!message.contains("s3cr"), "{pointer}: {message}");
        }
    }

    #[test]
    fn alternatives_fail_once_where_they_fail() {
        let schema = json!({"type": "object", "properties": {"v": {"anyOf": [
            {"type": "string", "maxLength": 1}, {"type": "integer"}]}}});
        assert_eq!(
            errors(schema, json!({"v": "long"})),
            [(
                "/v".to_string(),
                "value does not match any of the allowed schemas".to_string()
            )]
        );
    }

    #[test]
    fn a_prefix_is_put_before_every_pointer() {
        let validator = compile(&spec(), &json!({"type": "integer", "minimum": 1})).unwrap();
        let mut out = Vec::new();
        validator.violations(&json!(0), "/query/limit", &mut out);
        assert_eq!(out[0].pointer, "/query/limit");
        assert_eq!(out[0].message, "value is less than 1");
    }

    #[test]
    fn no_schema_accepts_anything() {
        assert_eq!(errors(Value::Bool(true), json!({"any": ["thing"]})), vec![]);
    }

    #[test]
    fn references_outside_the_document_are_refused() {
        for reference in [
            "/etc/passwd",
            "file:///etc/passwd",
            "http://127.0.0.1:9/x.json#/a",
        ] {
            let error = compile(&spec(), &json!({"$ref": reference})).unwrap_err();
            assert!(
                error.to_string().contains("compiling schema"),
                "{reference}: {error}"
            );
        }
    }

    #[test]
    fn an_invalid_schema_is_an_error_not_a_panic() {
        for schema in [
            json!({"type": "strnig"}),
            json!({"pattern": "("}),
            json!({"minLength": -1}),
            json!({"$ref": "#/components/schemas/Missing"}),
        ] {
            assert!(compile(&spec(), &schema).is_err(), "{schema}");
        }
    }
}
