//! Breaking-change protection: each service's bundled spec is compared with the snapshot
//! of it as last released (`openapi/released/<service>.yaml`, written by
//! `cargo xtask release`). A change that could break a client built against the release
//! fails `cargo xtask check`, unless the spec's `info.version` has a higher major.
//!
//! The direction decides what breaks. What a client *sends* (parameters, request bodies)
//! must still be accepted: removing, requiring or narrowing it breaks. What a client
//! *receives* (success responses) must still be understood by code generated from the
//! release, which deserialises strictly: progenitor refuses unknown fields of
//! `additionalProperties: false` objects, unknown enum values, and strings outside the
//! constraints it generated newtypes for. So in responses widening breaks too.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// Where the release snapshots live, relative to the workspace root.
pub const RELEASED_DIR: &str = "openapi/released";

pub fn snapshot_path(root: &Path, service: &str) -> PathBuf {
    root.join(RELEASED_DIR).join(format!("{service}.yaml"))
}

/// The text `cargo xtask release` writes for a service's snapshot.
pub fn snapshot_yaml(service: &str, bundled: &Value) -> Result<String> {
    Ok(format!(
        "# Written by `cargo xtask release`: the {service} API as last released. Do not edit.\n\
         # `cargo xtask check` refuses changes that would break its clients unless\n\
         # info.version's major is bumped.\n{}",
        serde_yaml::to_string(bundled)?
    ))
}

/// The major of a `MAJOR.MINOR.PATCH` version.
pub fn major(version: &str) -> Result<u64> {
    version
        .split('.')
        .next()
        .and_then(|m| m.trim_start_matches('v').parse().ok())
        .with_context(|| format!("info.version {version:?} is not MAJOR.MINOR.PATCH"))
}

pub fn version(doc: &Value) -> Result<&str> {
    doc.pointer("/info/version")
        .and_then(Value::as_str)
        .context("the spec has no info.version")
}

/// What comparing a service with its release found.
pub struct Verdict {
    pub released_version: String,
    pub version: String,
    /// Every change that can break a client of the release.
    pub breaking: Vec<String>,
}

impl Verdict {
    /// Breaking changes are allowed only with a new major version.
    pub fn allowed(&self) -> Result<bool> {
        Ok(self.breaking.is_empty() || major(&self.version)? > major(&self.released_version)?)
    }
}

/// Compares the current bundled spec of `service` under `root` with its snapshot;
/// `None` when the service has never been released.
pub fn verdict(root: &Path, service: &str) -> Result<Option<Verdict>> {
    let path = snapshot_path(root, service);
    if !path.exists() {
        return Ok(None);
    }
    let released = crate::bundle::load_yaml(&path)?;
    let current = crate::bundle::bundle_service(&root.join("openapi"), service)?;
    Ok(Some(Verdict {
        released_version: version(&released)?.to_string(),
        version: version(&current)?.to_string(),
        breaking: breaking_changes(&released, &current),
    }))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Dir {
    /// Sent by the client: the new schema must accept everything the old one did.
    Request,
    /// Sent by the service: old clients must accept everything the new one allows.
    Response,
}

struct Cmp<'a> {
    old: &'a Value,
    new: &'a Value,
    out: Vec<String>,
    /// (old $ref, new $ref, direction) pairs already being compared: stops recursion.
    seen: HashSet<(String, String, Dir)>,
}

/// Every change from `old` to `new` that can break a client of `old`, as readable lines.
pub fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut c = Cmp {
        old,
        new,
        out: Vec::new(),
        seen: HashSet::new(),
    };
    let new_ops: BTreeMap<String, crate::Operation> = crate::operations(new)
        .into_iter()
        .map(|o| (format!("{} {}", o.method.to_uppercase(), o.path), o))
        .collect();
    for o in crate::operations(old) {
        let key = format!("{} {}", o.method.to_uppercase(), o.path);
        match new_ops.get(&key) {
            None => c.out.push(format!("{key}: operation removed")),
            Some(n) => c.operation(&key, &o, n),
        }
    }
    c.out
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

fn params(doc: &Value, o: &crate::Operation) -> BTreeMap<String, Value> {
    let own =
        o.op.get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    o.shared_params
        .iter()
        .chain(own.iter())
        .map(|p| {
            let p = resolve(doc, p);
            let key = format!(
                "{} parameter {}",
                p.get("in").and_then(Value::as_str).unwrap_or("?"),
                p.get("name").and_then(Value::as_str).unwrap_or("?")
            );
            (key, p.clone())
        })
        .collect()
}

fn required(v: &Value) -> bool {
    v.get("required").and_then(Value::as_bool).unwrap_or(false)
}

/// Whether any operation of a document names roles (`x-roles`).
fn declares_roles(doc: &Value) -> bool {
    doc.get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .any(|op| op.get("x-roles").is_some())
}

/// Operation security, falling back to the document's; empty means none needed.
fn security(doc: &Value, op: &Value) -> Vec<Value> {
    op.get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_success(code: &str) -> bool {
    code.starts_with('2')
}

impl Cmp<'_> {
    fn operation(&mut self, at: &str, old: &crate::Operation, new: &crate::Operation) {
        let (o, n) = (old.op, new.op);
        if o.get("operationId") != n.get("operationId") {
            self.out.push(format!(
                "{at}: operationId changed from {} to {} (the client method is renamed)",
                o.get("operationId").unwrap_or(&Value::Null),
                n.get("operationId").unwrap_or(&Value::Null)
            ));
        }
        let (old_sec, new_sec) = (security(self.old, o), security(self.new, n));
        let anonymous = |s: &[Value]| s.is_empty() || s.iter().any(|r| r == &serde_json::json!({}));
        if anonymous(&old_sec) && !anonymous(&new_sec) {
            self.out
                .push(format!("{at}: now needs credentials, it needed none"));
        }
        let roles = |op: &Value| op.get("x-roles").cloned().unwrap_or(Value::Array(vec![]));
        let (old_roles, new_roles) = (roles(o), roles(n));
        // A release from before `x-roles` existed declared no roles either way (its
        // handlers checked them); only a release that declares roles can be broken here.
        if declares_roles(self.old)
            && new_roles.as_array().is_some_and(|r| {
                r.iter()
                    .any(|role| !old_roles.as_array().is_some_and(|o| o.contains(role)))
            })
        {
            self.out.push(format!(
                "{at}: now needs the role(s) {new_roles}, it needed {old_roles}"
            ));
        }

        let old_params = params(self.old, old);
        let new_params = params(self.new, new);
        for (name, p) in &old_params {
            match new_params.get(name) {
                None => self.out.push(format!("{at}: {name} removed")),
                Some(q) => {
                    if required(q) && !required(p) {
                        self.out.push(format!("{at}: {name} is now required"));
                    }
                    self.schema(
                        &format!("{at}: {name}"),
                        p.get("schema").unwrap_or(&Value::Null),
                        q.get("schema").unwrap_or(&Value::Null),
                        Dir::Request,
                    );
                }
            }
        }
        for (name, q) in new_params
            .iter()
            .filter(|(k, _)| !old_params.contains_key(*k))
        {
            if required(q) {
                self.out.push(format!("{at}: new required {name}"));
            }
        }

        let old_body = o.get("requestBody").map(|b| resolve(self.old, b));
        let new_body = n.get("requestBody").map(|b| resolve(self.new, b));
        match (old_body, new_body) {
            (None, Some(b)) if required(b) => {
                self.out.push(format!("{at}: new required request body"))
            }
            (Some(_), None) => self.out.push(format!("{at}: request body removed")),
            (Some(a), Some(b)) => {
                if required(b) && !required(a) {
                    self.out.push(format!("{at}: request body is now required"));
                }
                self.content(&format!("{at}: request body"), a, b, Dir::Request);
            }
            _ => {}
        }

        let codes = |op: &Value| -> BTreeSet<String> {
            op.get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .filter(|k| is_success(k))
                .collect()
        };
        let (old_codes, new_codes) = (codes(o), codes(n));
        for code in old_codes.difference(&new_codes) {
            self.out
                .push(format!("{at}: success status {code} removed"));
        }
        for code in new_codes.difference(&old_codes) {
            // A generated client treats a status it does not know as an error.
            self.out.push(format!("{at}: new success status {code}"));
        }
        for code in old_codes.intersection(&new_codes) {
            let a = resolve(self.old, &o["responses"][code]);
            let b = resolve(self.new, &n["responses"][code]);
            self.content(&format!("{at}: {code} response"), a, b, Dir::Response);
        }
    }

    /// Compares the media types of a request body or response.
    fn content(&mut self, at: &str, old: &Value, new: &Value, dir: Dir) {
        let media = |v: &Value| v.get("content").and_then(Value::as_object).cloned();
        let (Some(a), Some(b)) = (media(old), media(new)) else {
            // A body where there was none is ignored by old clients.
            if media(old).is_some() {
                self.out.push(format!("{at}: body removed"));
            }
            return;
        };
        for (ty, m) in &a {
            match b.get(ty) {
                None => self.out.push(format!("{at}: media type {ty} removed")),
                Some(n) => self.schema(
                    &format!("{at} ({ty})"),
                    m.get("schema").unwrap_or(&Value::Null),
                    n.get("schema").unwrap_or(&Value::Null),
                    dir,
                ),
            }
        }
    }

    fn schema(&mut self, at: &str, old: &Value, new: &Value, dir: Dir) {
        let refs = (
            old.get("$ref").and_then(Value::as_str),
            new.get("$ref").and_then(Value::as_str),
        );
        if refs.0.is_some() || refs.1.is_some() {
            let key = (
                refs.0.unwrap_or("").to_string(),
                refs.1.unwrap_or("").to_string(),
                dir,
            );
            if !self.seen.insert(key.clone()) {
                return;
            }
            let (a, b) = (resolve(self.old, old), resolve(self.new, new));
            self.schema(at, a, b, dir);
            self.seen.remove(&key);
            return;
        }
        // A one-element allOf is how a described $ref is written; see through it.
        let single = |s: &Value| {
            s.get("allOf")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 1)
                .map(|a| a[0].clone())
        };
        if let Some(a) = single(old) {
            return self.schema(at, &a, new, dir);
        }
        if let Some(b) = single(new) {
            return self.schema(at, old, &b, dir);
        }
        for comb in ["allOf", "anyOf", "oneOf"] {
            let (a, b) = (old.get(comb), new.get(comb));
            if a.is_some() || b.is_some() {
                match (a.and_then(Value::as_array), b.and_then(Value::as_array)) {
                    (Some(a), Some(b)) if a.len() == b.len() => {
                        for (i, (x, y)) in a.iter().zip(b).enumerate() {
                            self.schema(&format!("{at}/{comb}/{i}"), x, y, dir);
                        }
                    }
                    // Whether one composition accepts what another did is undecidable
                    // in general: call any other change breaking.
                    _ => self.out.push(format!("{at}: {comb} composition changed")),
                }
                return;
            }
        }

        let mut narrower = Vec::new();
        let mut wider = Vec::new();
        let ty = |s: &Value| s.get("type").and_then(Value::as_str).map(String::from);
        match (ty(old), ty(new)) {
            (a, b) if a == b => {}
            (Some(a), Some(b)) if a == "integer" && b == "number" => {
                wider.push("type integer became number".to_string())
            }
            (Some(a), Some(b)) if a == "number" && b == "integer" => {
                narrower.push("type number became integer".to_string())
            }
            (None, Some(b)) => narrower.push(format!("now restricted to type {b}")),
            (a, b) => {
                // Neither accepts all of the other: breaking both ways.
                let msg = format!("type changed from {a:?} to {b:?}");
                narrower.push(msg.clone());
                wider.push(msg);
            }
        }
        bounds(old, new, &mut narrower, &mut wider);

        if old.get("properties").is_some() || new.get("properties").is_some() {
            self.properties(at, old, new, dir, &mut narrower, &mut wider);
        }
        match (old.get("items"), new.get("items")) {
            (Some(a), Some(b)) => self.schema(&format!("{at}[]"), a, b, dir),
            (None, Some(_)) => narrower.push("items now restricted".into()),
            (Some(_), None) => wider.push("items no longer restricted".into()),
            _ => {}
        }
        let breaking = match dir {
            Dir::Request => narrower,
            Dir::Response => wider,
        };
        for what in breaking {
            self.out.push(format!("{at}: {what}"));
        }
    }

    fn properties(
        &mut self,
        at: &str,
        old: &Value,
        new: &Value,
        dir: Dir,
        narrower: &mut Vec<String>,
        wider: &mut Vec<String>,
    ) {
        let props = |s: &Value| {
            s.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let req = |s: &Value| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        let closed = |s: &Value| s.get("additionalProperties") == Some(&Value::Bool(false));
        let (op, np, or, nr) = (props(old), props(new), req(old), req(new));
        if closed(new) && !closed(old) {
            narrower.push("additional properties no longer allowed".into());
        }
        if closed(old) && !closed(new) {
            wider.push("additional properties now allowed".into());
        }
        for (name, a) in &op {
            match np.get(name) {
                None => {
                    // Requests: clients sending it are refused. Responses: clients
                    // reading it find nothing.
                    narrower.push(format!("property {name} removed"));
                    wider.push(format!("property {name} removed"));
                }
                Some(b) => {
                    self.schema(&format!("{at}/{name}"), a, b, dir);
                    if nr.contains(name) && !or.contains(name) {
                        narrower.push(format!("property {name} is now required"));
                    }
                    if or.contains(name) && !nr.contains(name) {
                        wider.push(format!("property {name} is no longer required"));
                    }
                }
            }
        }
        for name in np.keys().filter(|k| !op.contains_key(*k)) {
            if nr.contains(name) {
                narrower.push(format!("new required property {name}"));
            }
            if closed(old) {
                // Clients generated from the release refuse unknown fields here.
                wider.push(format!(
                    "new property {name} in an object without additional properties"
                ));
            }
        }
    }
}

/// Constraint changes, sorted into narrowing (accepts less) and widening (accepts more).
fn bounds(old: &Value, new: &Value, narrower: &mut Vec<String>, wider: &mut Vec<String>) {
    let num = |s: &Value, k: &str| s.get(k).and_then(Value::as_f64);
    // Bounds are usually integers; print them as written.
    let n = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            (x as i64).to_string()
        } else {
            x.to_string()
        }
    };
    let opt = |x: Option<f64>| x.map_or("unbounded".to_string(), n);
    for key in ["maxLength", "maxItems", "maxProperties", "maximum"] {
        match (num(old, key), num(new, key)) {
            (a, Some(b)) if a.is_none_or(|a| b < a) => {
                narrower.push(format!("{key} lowered to {} (was {})", n(b), opt(a)))
            }
            (Some(a), b) if b.is_none_or(|b| b > a) => {
                wider.push(format!("{key} raised from {} (now {})", n(a), opt(b)))
            }
            _ => {}
        }
    }
    for key in ["minLength", "minItems", "minProperties", "minimum"] {
        match (num(old, key), num(new, key)) {
            (a, Some(b)) if a.is_none_or(|a| b > a) => {
                narrower.push(format!("{key} raised to {} (was {})", n(b), opt(a)))
            }
            (Some(a), b) if b.is_none_or(|b| b < a) => {
                wider.push(format!("{key} lowered from {} (now {})", n(a), opt(b)))
            }
            _ => {}
        }
    }
    // Added: accepts less; removed: accepts more; changed: cannot tell, so both.
    for key in [
        "pattern",
        "format",
        "multipleOf",
        "uniqueItems",
        "exclusiveMinimum",
        "exclusiveMaximum",
    ] {
        let unset = |v: Option<&Value>| v.is_none() || v == Some(&Value::Bool(false));
        let (a, b) = (old.get(key), new.get(key));
        if a == b || (unset(a) && unset(b)) {
            continue;
        }
        if unset(a) {
            narrower.push(format!("new {key} {}", b.unwrap()));
        } else if unset(b) {
            wider.push(format!("{key} {} dropped", a.unwrap()));
        } else {
            let msg = format!("{key} changed from {} to {}", a.unwrap(), b.unwrap());
            narrower.push(msg.clone());
            wider.push(msg);
        }
    }
    let set = |s: &Value| {
        s.get("enum")
            .and_then(Value::as_array)
            .map(|v| v.iter().map(Value::to_string).collect::<BTreeSet<_>>())
    };
    match (set(old), set(new)) {
        (None, Some(_)) => narrower.push("now restricted to an enum".into()),
        (Some(_), None) => wider.push("no longer restricted to an enum".into()),
        (Some(a), Some(b)) => {
            let removed: Vec<_> = a.difference(&b).cloned().collect();
            let added: Vec<_> = b.difference(&a).cloned().collect();
            if !removed.is_empty() {
                narrower.push(format!("enum values removed: {}", removed.join(", ")));
            }
            if !added.is_empty() {
                wider.push(format!("enum values added: {}", added.join(", ")));
            }
        }
        (None, None) => {}
    }
    let nullable = |s: &Value| s.get("nullable") == Some(&Value::Bool(true));
    if nullable(old) && !nullable(new) {
        narrower.push("no longer nullable".into());
    }
    if nullable(new) && !nullable(old) {
        wider.push("now nullable".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "info": {"version": "1.2.0"},
            "paths": {
                "/things": {
                    "get": {"operationId": "list_things",
                        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}],
                        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}}}}}},
                    "post": {"operationId": "create_thing", "x-roles": ["admin"],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewThing"}}}},
                        "responses": {"201": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}
                }
            },
            "components": {"schemas": {
                "NewThing": {"type": "object", "additionalProperties": false, "required": ["name"],
                    "properties": {"name": {"type": "string", "maxLength": 50}, "colour": {"type": "string", "enum": ["red", "blue"]}}},
                "Thing": {"type": "object", "additionalProperties": false, "required": ["id", "name"],
                    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "parent": {"$ref": "#/components/schemas/Thing"}}}
            }}
        })
    }

    fn changes(edit: impl Fn(&mut Value)) -> Vec<String> {
        let old = doc();
        let mut new = doc();
        edit(&mut new);
        breaking_changes(&old, &new)
    }

    #[test]
    fn compatible_changes_pass() {
        let found = changes(|d| {
            let s = &mut d["components"]["schemas"]["NewThing"];
            s["properties"]["size"] = json!({"type": "integer"}); // new optional field
            s["properties"]["name"]["maxLength"] = json!(80); // widened
            s["properties"]["colour"]["enum"] = json!(["red", "blue", "green"]);
            d["paths"]["/things"]["get"]["parameters"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "q", "in": "query", "schema": {"type": "string"}}));
            d["paths"]["/other"] = json!({"get": {"operationId": "other", "responses": {}}});
            d["paths"]["/things"]["get"]["responses"]["404"] = json!({"description": "no"});
            d["components"]["schemas"]["Thing"]["required"] = json!(["id", "name", "parent"]);
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn breaking_changes_are_named() {
        type Edit = fn(&mut Value);
        let cases: [(Edit, &str); 12] = [
            (
                |d| d["paths"]["/things"]["get"]["x-roles"] = json!(["admin"]),
                "GET /things: now needs the role(s) [\"admin\"]",
            ),
            (
                |d| {
                    d["paths"]["/things"]
                        .as_object_mut()
                        .unwrap()
                        .shift_remove("post");
                },
                "POST /things: operation removed",
            ),
            (
                |d| {
                    d["components"]["schemas"]["NewThing"]["properties"]["name"]["maxLength"] =
                        json!(20)
                },
                "POST /things: request body (application/json)/name: maxLength lowered to 20",
            ),
            (
                |d| {
                    d["components"]["schemas"]["NewThing"]["properties"]["name"]["pattern"] =
                        json!("^[a-z]+$")
                },
                "new pattern",
            ),
            (
                |d| d["components"]["schemas"]["NewThing"]["required"] = json!(["name", "colour"]),
                "property colour is now required",
            ),
            (
                |d| d["paths"]["/things"]["get"]["parameters"][0]["schema"]["maximum"] = json!(50),
                "GET /things: query parameter limit: maximum lowered",
            ),
            (
                |d| {
                    d["paths"]["/things"]["get"]["parameters"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}))
                },
                "new required query parameter q",
            ),
            (
                |d| {
                    d["components"]["schemas"]["Thing"]["properties"]
                        .as_object_mut()
                        .unwrap()
                        .shift_remove("name");
                },
                "property name removed",
            ),
            (
                |d| {
                    d["components"]["schemas"]["Thing"]["properties"]["rating"] =
                        json!({"type": "integer"})
                },
                "new property rating in an object without additional properties",
            ),
            (
                |d| {
                    let r = d["paths"]["/things"]["post"]["responses"]
                        .as_object_mut()
                        .unwrap();
                    let created = r.shift_remove("201").unwrap();
                    r.insert("200".into(), created);
                },
                "success status 201 removed",
            ),
            (
                |d| {
                    d["components"]["schemas"]["Thing"]["properties"]["id"]["type"] =
                        json!("integer")
                },
                "type changed",
            ),
            (
                |d| {
                    d["components"]["schemas"]["NewThing"]["properties"]["colour"]["enum"] =
                        json!(["red"])
                },
                "enum values removed: \"blue\"",
            ),
        ];
        for (edit, expect) in cases {
            let found = changes(edit);
            assert!(
                found.iter().any(|f| f.contains(expect)),
                "expected {expect:?} in {found:?}"
            );
        }
    }

    #[test]
    fn only_a_new_major_allows_breaking_changes() {
        let v = |released: &str, current: &str, breaking: bool| Verdict {
            released_version: released.into(),
            version: current.into(),
            breaking: if breaking { vec!["x".into()] } else { vec![] },
        };
        assert!(v("1.2.0", "1.2.0", false).allowed().unwrap());
        assert!(!v("1.2.0", "1.3.0", true).allowed().unwrap());
        assert!(v("1.2.0", "2.0.0", true).allowed().unwrap());
        assert!(v("1.2.0", "bogus", true).allowed().is_err());
    }
}
