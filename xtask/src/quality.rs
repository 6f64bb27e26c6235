//! Is a spec good enough to publish? Its readers only have the documents (the static
//! pages, `/docs`, the client's rustdoc), so every bundled spec needs a version, contact
//! and licence, a description for every operation, parameter and schema property, and
//! examples that are valid: an example the service would refuse misleads.

use serde_json::{Map, Value};

/// Everything missing or wrong in a bundled spec, as readable lines.
pub fn problems(doc: &Value) -> Vec<String> {
    let mut q = Quality {
        doc,
        out: Vec::new(),
    };
    for key in ["version", "title", "description"] {
        if text(doc.pointer(&format!("/info/{key}"))).is_none() {
            q.out.push(format!("info.{key} is missing"));
        }
    }
    let contact = doc.pointer("/info/contact");
    if ["name", "url", "email"]
        .iter()
        .all(|k| text(contact.and_then(|c| c.get(*k))).is_none())
    {
        q.out.push("info.contact is missing".into());
    }
    if text(doc.pointer("/info/license/name")).is_none() {
        q.out.push("info.license is missing".into());
    }
    for o in crate::operations(doc) {
        let at = format!(
            "{} {} ({})",
            o.method.to_uppercase(),
            o.path,
            o.op.get("operationId")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        if text(o.op.get("description")).is_none() {
            q.out.push(format!("{at}: no description"));
        }
        let own = o.op.get("parameters").and_then(Value::as_array);
        for p in o.shared_params.iter().chain(own.into_iter().flatten()) {
            // Referenced parameters are checked once, under components.
            if p.get("$ref").is_none() {
                q.parameter(&format!("{at}: parameter"), p);
            }
        }
        if let Some(body) = o.op.get("requestBody") {
            q.content(&format!("{at}: request body"), body);
        }
        for (code, r) in
            o.op.get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
        {
            q.content(&format!("{at}: {code} response"), r);
        }
    }
    let components = |kind: &str| {
        doc.pointer(&format!("/components/{kind}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for (name, p) in components("parameters") {
        q.parameter(&format!("components.parameters.{name}"), &p);
    }
    for (name, r) in components("responses")
        .into_iter()
        .chain(components("requestBodies"))
    {
        q.content(&format!("components: {name}"), &r);
    }
    for (name, s) in components("schemas") {
        q.schema(&format!("schema {name}"), &s);
    }
    q.out
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

struct Quality<'a> {
    doc: &'a Value,
    out: Vec<String>,
}

impl Quality<'_> {
    fn parameter(&mut self, at: &str, p: &Value) {
        let at = format!(
            "{at} {}",
            p.get("name").and_then(Value::as_str).unwrap_or("?")
        );
        if text(p.get("description")).is_none() {
            self.out.push(format!("{at}: no description"));
        }
        if let Some(schema) = p.get("schema") {
            self.examples(&at, p, schema);
            self.schema(&at, schema);
        }
    }

    /// The media types of a request body or response, and the schemas of its headers.
    fn content(&mut self, at: &str, v: &Value) {
        if v.get("$ref").is_some() {
            return;
        }
        for (ty, media) in v
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(schema) = media.get("schema") {
                let at = format!("{at} ({ty})");
                self.examples(&at, media, schema);
                self.schema(&at, schema);
            }
        }
        for (name, h) in v
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(schema) = h.get("schema") {
                self.schema(&format!("{at} header {name}"), schema);
            }
        }
    }

    /// `example` and every `examples.*.value` of a parameter or media type.
    fn examples(&mut self, at: &str, holder: &Value, schema: &Value) {
        if let Some(example) = holder.get("example") {
            self.validate(&format!("{at}: example"), schema, example);
        }
        for (name, e) in holder
            .get("examples")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(value) = e.get("value") {
                self.validate(&format!("{at}: example {name}"), schema, value);
            }
        }
    }

    fn schema(&mut self, at: &str, s: &Value) {
        if s.get("$ref").is_some() {
            return; // checked where it is defined
        }
        if let Some(example) = s.get("example") {
            self.validate(&format!("{at}: example"), s, example);
        }
        for (name, prop) in s
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let at = format!("{at}.{name}");
            if !self.described(prop) {
                self.out.push(format!("{at}: no description"));
            }
            self.schema(&at, prop);
        }
        if let Some(items) = s.get("items") {
            self.schema(&format!("{at}[]"), items);
        }
        if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
            self.schema(&format!("{at}.*"), extra);
        }
        for comb in ["allOf", "anyOf", "oneOf"] {
            for (i, part) in s
                .get(comb)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.schema(&format!("{at}/{comb}/{i}"), part);
            }
        }
    }

    /// A property is described by its own description or, when it is a `$ref` (whose
    /// siblings OpenAPI 3.0 ignores), by the referenced schema's.
    fn described(&self, prop: &Value) -> bool {
        if text(prop.get("description")).is_some() {
            return true;
        }
        let target = prop
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| self.doc.pointer(p));
        target.is_some_and(|t| text(t.get("description")).is_some())
    }

    fn validate(&mut self, at: &str, schema: &Value, example: &Value) {
        match compile(self.doc, schema) {
            Err(e) => self.out.push(format!("{at}: schema does not compile: {e}")),
            Ok((schemas, index)) => {
                if let Err(e) = schemas.validate(example, index) {
                    let mut leaves = Vec::new();
                    failures(&e, &mut leaves);
                    for (pointer, what) in leaves {
                        self.out.push(format!(
                            "{at} {example} is invalid: {what} (at {pointer:?})"
                        ));
                    }
                }
            }
        }
    }
}

/// A validator for `schema` with `#/components/...` resolved in `doc`: draft 4 with
/// formats checked, as the services validate requests (server/src/runtime/schema.rs).
fn compile(doc: &Value, schema: &Value) -> Result<(boon::Schemas, boon::SchemaIndex), String> {
    const DOCUMENT: &str = "http://taproom.invalid/openapi.json";
    let mut root = Map::new();
    root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
    if let Some(components) = doc.get("components") {
        root.insert("components".into(), components.clone());
    }
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V4);
    compiler.enable_format_assertions();
    // Only references inside the document: checking a spec never reads files.
    compiler.use_loader(Box::new(boon::SchemeUrlLoader::new()));
    let mut schemas = boon::Schemas::new();
    compiler
        .add_resource(DOCUMENT, Value::Object(root))
        .map_err(|e| format!("{e:#}"))?;
    let index = compiler
        .compile(DOCUMENT, &mut schemas)
        .map_err(|e| format!("{e:#}"))?;
    Ok((schemas, index))
}

/// The failures at the leaves of boon's error tree, each with its instance pointer.
fn failures(error: &boon::ValidationError, out: &mut Vec<(String, String)>) {
    if error.causes.is_empty() {
        out.push((error.instance_location.to_string(), error.kind.to_string()));
    }
    for cause in &error.causes {
        failures(cause, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "info": {"title": "T", "description": "D", "version": "1.0.0",
                     "contact": {"name": "us"}, "license": {"name": "Apache-2.0"}},
            "paths": {"/things/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "description": "Its id.",
                                "schema": {"type": "string", "format": "uuid"}, "example": "0190c5a4-7a1e-7000-8000-000000000001"}],
                "get": {"operationId": "get_thing", "description": "Gets it.", "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}
                }}
            }},
            "components": {"schemas": {
                "Name": {"type": "string", "maxLength": 5, "description": "A short name.", "example": "hops"},
                "Thing": {"type": "object", "required": ["name"], "example": {"name": "malt"},
                          "properties": {"name": {"$ref": "#/components/schemas/Name"}, "size": {"type": "integer", "description": "How big."}}}
            }}
        })
    }

    #[test]
    fn a_complete_spec_passes() {
        assert_eq!(problems(&doc()), Vec::<String>::new());
    }

    #[test]
    fn missing_descriptions_and_invalid_examples_are_named() {
        type Edit = fn(&mut Value);
        let cases: [(Edit, &str); 7] = [
            (
                |d| d["info"].as_object_mut().unwrap().clear(),
                "info.contact is missing",
            ),
            (
                |d| d["paths"]["/things/{id}"]["get"]["description"] = json!(" "),
                "GET /things/{id} (get_thing): no description",
            ),
            (
                |d| d["paths"]["/things/{id}"]["parameters"][0]["description"] = Value::Null,
                "parameter id: no description",
            ),
            (
                |d| {
                    d["components"]["schemas"]["Thing"]["properties"]["size"] =
                        json!({"type": "integer"})
                },
                "schema Thing.size: no description",
            ),
            (
                |d| d["components"]["schemas"]["Name"]["description"] = Value::Null,
                "schema Thing.name: no description",
            ),
            (
                |d| {
                    d["components"]["schemas"]["Thing"]["example"] =
                        json!({"name": "much too long"})
                },
                "schema Thing: example",
            ),
            (
                |d| d["paths"]["/things/{id}"]["parameters"][0]["example"] = json!("not-a-uuid"),
                "parameter id: example \"not-a-uuid\" is invalid",
            ),
        ];
        for (edit, expect) in cases {
            let mut d = doc();
            edit(&mut d);
            let found = problems(&d);
            assert!(
                found.iter().any(|f| f.contains(expect)),
                "expected {expect:?} in {found:?}"
            );
        }
    }
}
