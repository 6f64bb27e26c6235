//! Bundles a service spec with the parts of `common.yaml` it references into one
//! self-contained document: what progenitor reads, what the server embeds and serves.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

pub const COMMON_FILE: &str = "common.yaml";

/// Where a `$ref` inside some piece of YAML points when it starts with `#`.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Service,
    Common,
}

pub fn load_yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Loads `<dir>/<service>.yaml` and `<dir>/common.yaml` and bundles them.
pub fn bundle_service(dir: &Path, service: &str) -> Result<Value> {
    let spec = load_yaml(&dir.join(format!("{service}.yaml")))?;
    let common = load_yaml(&dir.join(COMMON_FILE))?;
    bundle(spec, &common).with_context(|| format!("bundling {service}.yaml"))
}

pub fn bundle(mut spec: Value, common: &Value) -> Result<Value> {
    let mut imported = Map::new();
    let mut b = Bundler {
        common,
        imported: &mut imported,
    };
    let paths = spec
        .get_mut("paths")
        .ok_or_else(|| anyhow!("spec has no paths"))?;
    b.walk(paths, Origin::Service)?;
    if let Some(components) = spec.get_mut("components") {
        b.walk(components, Origin::Service)?;
    }
    // Security schemes are referenced by name, not by `$ref`: a spec that requires any
    // gets common's.
    if spec.to_string().contains("\"security\"") {
        if let Some(schemes) = common.pointer("/components/securitySchemes") {
            imported.insert("securitySchemes".into(), schemes.clone());
        }
    }
    // Merge imported common components into the spec's own components.
    let components = spec
        .as_object_mut()
        .ok_or_else(|| anyhow!("spec is not an object"))?
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    for (kind, items) in imported {
        let target = components
            .as_object_mut()
            .ok_or_else(|| anyhow!("components is not an object"))?
            .entry(kind.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| anyhow!("components.{kind} is not an object"))?;
        for (name, value) in items.as_object().into_iter().flatten() {
            if let Some(existing) = target.get(name) {
                if existing != value {
                    bail!(
                        "components.{kind}.{name} is defined both in the spec and in {COMMON_FILE}"
                    );
                }
            }
            target.insert(name.clone(), value.clone());
        }
    }
    Ok(spec)
}

struct Bundler<'a> {
    common: &'a Value,
    /// kind -> name -> component, imported from common.yaml (refs already rewritten).
    imported: &'a mut Map<String, Value>,
}

impl Bundler<'_> {
    fn walk(&mut self, value: &mut Value, origin: Origin) -> Result<()> {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let r = r.clone();
                    if let Some(replacement) = self.resolve_ref(&r, origin)? {
                        *value = replacement;
                    }
                    return Ok(());
                }
                for v in map.values_mut() {
                    self.walk(v, origin)?;
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.walk(v, origin)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Returns what should replace the object holding `$ref: r`: a rewritten `$ref`, or
    /// the inlined target (path items cannot stay references in a bundle).
    fn resolve_ref(&mut self, r: &str, origin: Origin) -> Result<Option<Value>> {
        let (file, pointer) = r
            .split_once('#')
            .ok_or_else(|| anyhow!("$ref {r:?} has no '#'"))?;
        let target_origin = match (file, origin) {
            ("", o) => o,
            (COMMON_FILE, _) | ("./common.yaml", _) => Origin::Common,
            _ => bail!("$ref {r:?}: only local refs and refs into {COMMON_FILE} are supported"),
        };
        if target_origin == Origin::Service {
            return Ok(None); // already local
        }
        let target = self
            .common
            .pointer(pointer)
            .ok_or_else(|| anyhow!("$ref {r:?} points at nothing in {COMMON_FILE}"))?
            .clone();
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["components", kind, name] => {
                let name = name.replace("~1", "/").replace("~0", "~");
                let already = self
                    .imported
                    .get(*kind)
                    .and_then(|k| k.get(&name))
                    .is_some();
                if !already {
                    // Insert first so that recursive references terminate.
                    self.imported
                        .entry(kind.to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .expect("object")
                        .insert(name.clone(), Value::Null);
                    let mut target = target;
                    self.walk(&mut target, Origin::Common)?;
                    self.imported[*kind]
                        .as_object_mut()
                        .expect("object")
                        .insert(name.clone(), target);
                }
                let mut m = Map::new();
                m.insert("$ref".into(), Value::String(format!("#/components/{kind}/{}", parts[2])));
                Ok(Some(Value::Object(m)))
            }
            ["paths", _] => {
                let mut target = target;
                self.walk(&mut target, Origin::Common)?;
                Ok(Some(target))
            }
            _ => bail!("$ref {r:?}: can only reference common.yaml#/components/<kind>/<name> or #/paths/<path>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_paths_and_imports_components_transitively() {
        let common = json!({
            "paths": {"/ping": {"get": {"operationId": "ping", "responses": {"200": {"$ref": "#/components/responses/Ok"}}}}},
            "components": {
                "responses": {"Ok": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ping"}}}}},
                "schemas": {"Ping": {"type": "object"}, "Unused": {"type": "string"}}
            }
        });
        let spec = json!({"paths": {"/ping": {"$ref": "common.yaml#/paths/~1ping"}}});
        let out = bundle(spec, &common).unwrap();
        assert_eq!(out["paths"]["/ping"]["get"]["operationId"], "ping");
        assert_eq!(
            out["paths"]["/ping"]["get"]["responses"]["200"]["$ref"],
            "#/components/responses/Ok"
        );
        assert_eq!(out["components"]["schemas"]["Ping"]["type"], "object");
        assert!(out["components"]["schemas"].get("Unused").is_none());
    }

    #[test]
    fn refuses_conflicting_component_names() {
        let common = json!({"components": {"schemas": {"A": {"type": "string"}}}});
        let spec = json!({
            "paths": {"/x": {"get": {"responses": {"200": {"description": "x", "content": {"application/json": {"schema": {"$ref": "common.yaml#/components/schemas/A"}}}}}}}},
            "components": {"schemas": {"A": {"type": "integer"}}}
        });
        assert!(bundle(spec, &common).is_err());
    }

    #[test]
    fn refuses_unknown_files_and_dangling_refs() {
        let common = json!({});
        let spec = json!({"paths": {"/x": {"$ref": "other.yaml#/paths/~1x"}}});
        assert!(bundle(spec, &common).is_err());
        let spec = json!({"paths": {"/x": {"$ref": "common.yaml#/paths/~1x"}}});
        assert!(bundle(spec, &common).is_err());
    }
}
