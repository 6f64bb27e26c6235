//! The gateway's combined OpenAPI document: every service's operations behind one front
//! door, for the docs the gateway serves at `/docs`. Infrastructure operations stay per
//! service (every service has its own `/readyz`), and operations marked `x-internal: true`
//! (calls between services) are not behind the gateway at all. Components that two services define
//! differently under one name (each has its own `NotFound`) are renamed `<Service><Name>`
//! in the combined document, with that service's references rewritten.

use anyhow::{bail, Result};
use heck::ToUpperCamelCase;
use serde_json::{json, Map, Value};

/// Rewrites every `$ref` equal to `from` into `to`.
fn rewrite_refs(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if r == from {
                    *r = to.to_string();
                }
            }
            map.values_mut().for_each(|c| rewrite_refs(c, from, to));
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_refs(c, from, to)),
        _ => {}
    }
}

/// Whether no operation of a path item belongs behind the gateway.
fn stays_behind(item: &Value) -> bool {
    let ops: Vec<&Value> = ["get", "post", "put", "patch", "delete"]
        .iter()
        .filter_map(|m| item.get(*m))
        .collect();
    !ops.is_empty()
        && ops.iter().all(|op| {
            let infra = op
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t == crate::codegen::INFRA_TAG));
            infra || op.get("x-internal") == Some(&Value::Bool(true))
        })
}

/// Combines bundled service documents (in service order) into the gateway's document.
pub fn combine(services: &[(&str, Value)]) -> Result<Value> {
    let mut paths = Map::new();
    let mut components: Map<String, Value> = Map::new();
    let mut tags: Vec<Value> = Vec::new();
    for (service, doc) in services {
        let mut doc = doc.clone();
        // Rename this service's components that clash with ones already merged.
        let kinds: Vec<(String, Vec<String>)> = doc
            .get("components")
            .and_then(Value::as_object)
            .map(|c| {
                c.iter()
                    .map(|(kind, items)| {
                        let names = items
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        (kind.clone(), names)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (kind, names) in kinds {
            for name in names {
                let mine = doc["components"][&kind][&name].clone();
                let theirs = components.get(&kind).and_then(|k| k.get(&name));
                if theirs.is_none() || theirs == Some(&mine) {
                    continue;
                }
                let renamed = format!("{}{name}", service.to_upper_camel_case());
                if kind == "securitySchemes" {
                    bail!("{service}: security scheme {name} differs from another service's");
                }
                rewrite_refs(
                    &mut doc,
                    &format!("#/components/{kind}/{name}"),
                    &format!("#/components/{kind}/{renamed}"),
                );
                let section = doc["components"][&kind]
                    .as_object_mut()
                    .expect("components kinds are maps");
                let value = section.remove(&name).expect("listed above");
                section.insert(renamed, value);
            }
        }
        for (kind, items) in doc
            .get("components")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let target = components
                .entry(kind.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("components kinds are maps");
            for (name, value) in items.as_object().into_iter().flatten() {
                target.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        for (path, item) in doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if stays_behind(item) {
                continue;
            }
            if paths.insert(path.clone(), item.clone()).is_some() {
                bail!("{service}: path {path} is served by another service too");
            }
        }
        for tag in doc
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if tag.get("name").and_then(Value::as_str) == Some(crate::codegen::INFRA_TAG) {
                continue;
            }
            if !tags.iter().any(|t| t.get("name") == tag.get("name")) {
                tags.push(tag.clone());
            }
        }
    }
    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Taproom (all services)",
            "description": "Every Taproom service behind the gateway (deploy/nginx.conf): one origin, one document. Each service's own document, with its health endpoints, is at its own /openapi.json.",
            "version": "1.0.0",
            "license": {"name": "Apache-2.0"}
        },
        "tags": tags,
        "paths": paths,
        "components": components,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(not_found: &str, path: &str) -> Value {
        json!({
            "paths": {
                "/ping": {"get": {"operationId": "ping", "tags": ["infrastructure"], "responses": {}}},
                path: {"get": {"operationId": format!("get{path}"), "tags": ["x"], "responses": {
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                }}}
            },
            "components": {
                "responses": {"NotFound": {"description": not_found}},
                "schemas": {"Problem": {"type": "object"}}
            }
        })
    }

    #[test]
    fn merges_shared_components_and_renames_clashing_ones() {
        let doc = combine(&[
            ("users", service("No such user.", "/v1/users")),
            ("beers", service("No such beer.", "/v1/beers")),
        ])
        .unwrap();
        assert!(
            doc["paths"].get("/ping").is_none(),
            "infrastructure stays per service"
        );
        assert_eq!(
            doc["paths"]["/v1/beers"]["get"]["responses"]["404"]["$ref"],
            "#/components/responses/BeersNotFound"
        );
        assert_eq!(
            doc["paths"]["/v1/users"]["get"]["responses"]["404"]["$ref"],
            "#/components/responses/NotFound"
        );
        assert_eq!(
            doc["components"]["responses"]["BeersNotFound"]["description"],
            "No such beer."
        );
        assert_eq!(
            doc["components"]["schemas"].as_object().unwrap().len(),
            1,
            "one Problem"
        );
    }

    #[test]
    fn refuses_one_path_in_two_services() {
        assert!(combine(&[("a", service("x", "/v1/x")), ("b", service("x", "/v1/x"))]).is_err());
    }
}
