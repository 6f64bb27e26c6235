//! Does what dropshot serves match the YAML? Both documents are reduced to the
//! structure a client depends on (operations, operationIds, parameters, bodies, status
//! codes, and schemas as property names, types, required lists and enums) and compared.
//! Constraints (lengths, patterns, bounds) are not compared: dropshot's document drops
//! them, and the runtime enforces them from the YAML itself.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Formats that change the Rust type (and so the wire contract); others (email,
/// password, uint32, …) are validation or documentation only.
const TYPED_FORMATS: [&str; 3] = ["uuid", "date-time", "date"];

/// Every difference between the YAML and the served document, as readable lines.
pub fn compare(yaml: &Value, served: &Value) -> Vec<String> {
    let a = normalise(yaml);
    let b = normalise(served);
    let mut out = Vec::new();
    for (op, left) in &a {
        match b.get(op) {
            None => out.push(format!("{op}: in the YAML but not served")),
            Some(right) => diff(op, left, right, &mut out),
        }
    }
    for op in b.keys().filter(|op| !a.contains_key(*op)) {
        out.push(format!("{op}: served but not in the YAML"));
    }
    out
}

fn diff(at: &str, yaml: &Value, served: &Value, out: &mut Vec<String>) {
    match (yaml, served) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{at}/{k}"), v, w, out),
                    None => out.push(format!(
                        "{at}/{k}: in the YAML ({}) but not served",
                        brief(v)
                    )),
                }
            }
            for (k, w) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                out.push(format!(
                    "{at}/{k}: served ({}) but not in the YAML",
                    brief(w)
                ));
            }
        }
        (a, b) if a != b => out.push(format!(
            "{at}: YAML has {}, served has {}",
            brief(a),
            brief(b)
        )),
        _ => {}
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", &s[..120])
    } else {
        s
    }
}

/// `"GET /v1/users"` -> normalised operation.
pub fn normalise(doc: &Value) -> BTreeMap<String, Value> {
    crate::operations(doc)
        .into_iter()
        .map(|o| {
            let key = format!("{} {}", o.method.to_uppercase(), o.path);
            (key, operation(doc, o.op, &o.shared_params))
        })
        .collect()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..16 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(p) => v = doc.pointer(p).unwrap_or(&Value::Null),
            None => break,
        }
    }
    v
}

fn operation(doc: &Value, op: &Value, shared: &[Value]) -> Value {
    let mut params = Map::new();
    let own = op
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for p in shared.iter().chain(own.iter()) {
        let p = resolve(doc, p);
        let name = format!(
            "{} {}",
            p.get("in").and_then(Value::as_str).unwrap_or("?"),
            p.get("name").and_then(Value::as_str).unwrap_or("?")
        );
        let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
        let schema = p
            .get("schema")
            .map(|s| schema(doc, s, &mut Vec::new()))
            .unwrap_or(Value::Null);
        params.insert(name, json!({"required": required, "schema": schema}));
    }
    let body = op.get("requestBody").map(|b| {
        let b = resolve(doc, b);
        json!({
            "required": b.get("required").and_then(Value::as_bool).unwrap_or(false),
            "schema": first_schema(doc, b),
        })
    });
    let mut responses = Map::new();
    for (code, r) in op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        // 304 is the runtime's answer to a matching If-None-Match (runtime/http.rs), not
        // something a handler returns, so dropshot's document cannot list it.
        if code == "304" {
            continue;
        }
        let r = resolve(doc, r);
        let code = match code.as_bytes().first() {
            Some(b'4') => "4XX".to_string(),
            Some(b'5') => "5XX".to_string(),
            _ => code.clone(),
        };
        let schema = first_schema(doc, r);
        if let Some(existing) = responses.get(&code) {
            if existing != &schema {
                // Two 4xx codes with different bodies: keep both visible to the diff.
                responses.insert(format!("{code} (also)"), schema);
                continue;
            }
        }
        responses.insert(code, schema);
    }
    json!({
        "operationId": op.get("operationId").cloned().unwrap_or(Value::Null),
        "parameters": params,
        "requestBody": body,
        "responses": responses,
    })
}

/// The schema of the first media type of a request body or response (media types are
/// not compared: dropshot cannot yet say `application/problem+json`).
fn first_schema(doc: &Value, v: &Value) -> Value {
    v.get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.values().next())
        .and_then(|m| m.get("schema"))
        .map(|s| schema(doc, s, &mut Vec::new()))
        .unwrap_or(Value::Null)
}

fn schema(doc: &Value, s: &Value, seen: &mut Vec<String>) -> Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        if seen.contains(&name) {
            return json!({"recursive": name});
        }
        seen.push(name);
        let out = schema(doc, resolve(doc, s), seen);
        seen.pop();
        return out;
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(items) = s.get(combinator).and_then(Value::as_array) {
            if items.len() == 1 {
                return schema(doc, &items[0], seen);
            }
            let parts: Vec<Value> = items.iter().map(|i| schema(doc, i, seen)).collect();
            return json!({ combinator: parts });
        }
    }
    let ty = s.get("type").and_then(Value::as_str);
    let mut out = Map::new();
    if let Some(t) = ty {
        out.insert("type".into(), json!(t));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let props: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), schema(doc, v, seen)))
            .collect();
        out.insert("properties".into(), Value::Object(props));
        let mut required: Vec<String> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        required.sort();
        out.insert("required".into(), json!(required));
    }
    if let Some(items) = s.get("items") {
        out.insert("items".into(), schema(doc, items, seen));
    }
    if let Some(Value::Bool(false)) = s.get("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    if let Some(format) = s.get("format").and_then(Value::as_str) {
        if TYPED_FORMATS.contains(&format) {
            out.insert("format".into(), json!(format));
        }
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let mut values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        values.sort();
        out.insert("enum".into(), json!(values));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(param_type: &str, required: &[&str]) -> Value {
        json!({
            "paths": {"/things/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": param_type}}],
                "get": {"operationId": "get_thing", "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                    "404": {"description": "no", "content": {"application/problem+json": {"schema": {"type": "object"}}}},
                    "4XX": {"description": "no", "content": {"application/json": {"schema": {"type": "object"}}}}
                }}
            }},
            "components": {"schemas": {"Thing": {
                "type": "object", "required": required, "description": "ignored",
                "properties": {"name": {"type": "string", "maxLength": 5, "nullable": true}, "id": {"type": "string", "format": "uuid"}}
            }}}
        })
    }

    #[test]
    fn ignores_constraints_descriptions_and_order() {
        let mut served = doc("string", &["name", "id"]);
        served["components"]["schemas"]["Thing"]["properties"]["name"] = json!({"type": "string"});
        served["components"]["schemas"]["Thing"]["description"] = json!("`Thing`");
        assert_eq!(
            compare(&doc("string", &["id", "name"]), &served),
            Vec::<String>::new()
        );
    }

    #[test]
    fn catches_type_required_format_and_operation_drift() {
        let yaml = doc("string", &["id", "name"]);
        assert!(!compare(&yaml, &doc("integer", &["id", "name"])).is_empty());
        assert!(!compare(&yaml, &doc("string", &["id"])).is_empty());
        let mut served = yaml.clone();
        served["components"]["schemas"]["Thing"]["properties"]["id"] = json!({"type": "string"});
        assert!(compare(&yaml, &served).iter().any(|d| d.contains("format")));
        let mut served = yaml.clone();
        served["paths"]["/things/{id}"]["get"]["operationId"] = json!("fetch_thing");
        assert!(compare(&yaml, &served)
            .iter()
            .any(|d| d.contains("operationId")));
        let mut served = yaml.clone();
        served["paths"]["/things/{id}"]["get"]["responses"]
            .as_object_mut()
            .unwrap()
            .insert("201".into(), json!({"description": "x"}));
        assert!(compare(&yaml, &served).iter().any(|d| d.contains("201")));
        let mut served = yaml.clone();
        served["paths"]["/other"] = json!({"get": {"operationId": "other", "responses": {}}});
        assert!(compare(&yaml, &served)
            .iter()
            .any(|d| d.contains("served but not in the YAML")));
    }
}
