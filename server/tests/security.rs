//! The security every operation declares is the security the running services enforce.
//!
//! The test walks every operation of every service's bundled document
//! (`openapi/bundled/<service>.yaml`, all but the gateway's, so a new service is covered
//! by adding its document), runs the real `server all`, and sends each operation the
//! requests its declared security must refuse or let through:
//!
//! - The requirement is the operation's `security`, else the document's. None at all,
//!   `security: []`, or an alternative that is the empty object `{}`: public.
//! - Protected, whatever the scheme: no credentials is 401 with a problem body, also
//!   with an invalid body and invalid path and query parameters, so that authentication
//!   is proven to come before validation.
//! - A JWT bearer scheme (`bearerFormat: JWT`): forged tokens (unknown key, the real
//!   `kid` with another key's signature, real signature over changed claims, `alg: none`,
//!   not a JWT) are 401 problems; a real token is never 401.
//! - `x-roles`: a real token whose role is not listed is 403 with a problem body, again
//!   with a valid and with an invalid request (roles are checked before validation).
//! - A bearer scheme that is not a JWT (`eventsAuth`, the shared `EVENTS_TOKEN`): users'
//!   tokens and a wrong secret are 401; the right secret is not.
//! - HTTP Basic: wrong credentials are 401.
//! - Public: without credentials, never 401 (a body is built from the schema's examples).
//!
//! Every violation is collected, and the test fails once at the end listing them all.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Fewer operations than this means the walk read the documents wrong.
const MIN_OPERATIONS: usize = 40;
const EVENTS_TOKEN: &str = "security-walk-events-token, 32 bytes or more";
const ADMIN_USERNAME: &str = "walk_admin";
const ADMIN_PASSWORD: &str = "walk admin password";

/// One service's bundled document, as JSON.
struct Spec {
    service: String,
    doc: Value,
}

fn bundled_specs() -> Vec<Spec> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/bundled");
    let mut specs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let Some(service) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        if service == "gateway" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        specs.push(Spec {
            service: service.to_string(),
            doc: serde_json::to_value(yaml).unwrap(),
        });
    }
    specs.sort_by(|a, b| a.service.cmp(&b.service));
    specs
}

/// `value` with its (local) `$ref`s followed.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("not a local $ref: {reference}"));
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref: {reference}"));
    }
    panic!("$ref chain too long at {value}");
}

/// What a security scheme asks for.
#[derive(Debug, Clone, PartialEq)]
enum Scheme {
    /// `Authorization: Bearer <JWT>` minted by the users service.
    Jwt,
    /// `Authorization: Bearer <shared secret>` (not a user's token).
    Secret,
    /// HTTP Basic.
    Basic,
    /// Anything else (checked only for "no credentials").
    Other(String),
}

#[derive(Debug)]
enum Access {
    Public,
    /// Every scheme named by some alternative of the requirement.
    Protected(Vec<Scheme>),
}

struct Operation<'a> {
    service: &'a str,
    doc: &'a Value,
    id: String,
    method: Method,
    path: String,
    /// Path-level and operation-level parameters, `$ref`s followed.
    params: Vec<&'a Value>,
    /// The `application/json` request body schema, if any.
    body: Option<&'a Value>,
    access: Access,
    /// `x-roles`: the roles allowed, when the operation restricts them.
    roles: Option<Vec<String>>,
}

impl Operation<'_> {
    fn has(&self, scheme: &Scheme) -> bool {
        matches!(&self.access, Access::Protected(schemes) if schemes.contains(scheme))
    }
}

fn classify(doc: &Value, name: &str) -> Scheme {
    let scheme = doc
        .pointer(&format!("/components/securitySchemes/{name}"))
        .map(|s| resolve(doc, s))
        .unwrap_or_else(|| panic!("security scheme {name} is not defined"));
    let http = scheme["type"].as_str() == Some("http");
    let kind = scheme["scheme"].as_str().unwrap_or("").to_ascii_lowercase();
    match (http, kind.as_str()) {
        (true, "bearer") if scheme["bearerFormat"].as_str() == Some("JWT") => Scheme::Jwt,
        (true, "bearer") => Scheme::Secret,
        (true, "basic") => Scheme::Basic,
        _ => Scheme::Other(name.to_string()),
    }
}

fn access(doc: &Value, operation: &Value) -> Access {
    let requirement = operation.get("security").or_else(|| doc.get("security"));
    let Some(alternatives) = requirement.and_then(Value::as_array) else {
        return Access::Public;
    };
    let anonymous = alternatives
        .iter()
        .any(|alt| alt.as_object().is_some_and(|o| o.is_empty()));
    if alternatives.is_empty() || anonymous {
        return Access::Public;
    }
    let mut schemes = Vec::new();
    for alternative in alternatives {
        for name in alternative.as_object().into_iter().flat_map(|o| o.keys()) {
            let scheme = classify(doc, name);
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
    }
    Access::Protected(schemes)
}

fn operations(spec: &Spec) -> Vec<Operation<'_>> {
    let doc = &spec.doc;
    let mut found = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        let item = resolve(doc, item);
        let shared: Vec<&Value> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(doc, p))
            .collect();
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let mut params: Vec<&Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(doc, p))
                .collect();
            for p in &shared {
                if !params
                    .iter()
                    .any(|o| o["name"] == p["name"] && o["in"] == p["in"])
                {
                    params.push(p);
                }
            }
            let body = operation
                .get("requestBody")
                .map(|b| resolve(doc, b))
                .and_then(|b| b.pointer("/content/application~1json/schema"));
            let roles = operation.get("x-roles").map(|roles| {
                roles
                    .as_array()
                    .expect("x-roles is a list")
                    .iter()
                    .map(|r| r.as_str().expect("a role is a string").to_string())
                    .collect()
            });
            found.push(Operation {
                service: &spec.service,
                doc,
                id: operation["operationId"]
                    .as_str()
                    .unwrap_or("(no operationId)")
                    .to_string(),
                method: Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap(),
                path: path.clone(),
                params,
                body,
                access: access(doc, operation),
                roles,
            });
        }
    }
    found
}

/// A value the schema accepts: its `example`, else one built from its parts.
fn example(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(default) = schema.get("default") {
        return default.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in all {
            if let Value::Object(o) = example(doc, part) {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = schema[key].as_array().and_then(|a| a.first()) {
            return example(doc, first);
        }
    }
    let kind = schema["type"]
        .as_str()
        .unwrap_or(if schema.get("properties").is_some() {
            "object"
        } else {
            ""
        });
    match kind {
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut object = serde_json::Map::new();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                // Required properties, and the optional ones the spec gives an example of.
                if required.contains(&name.as_str())
                    || resolve(doc, property).get("example").is_some()
                {
                    object.insert(name.clone(), example(doc, property));
                }
            }
            Value::Object(object)
        }
        "array" => json!([example(doc, &schema["items"])]),
        "string" => {
            let text = match schema["format"].as_str().unwrap_or("") {
                "uuid" => Uuid::new_v4().to_string(),
                "date-time" => "2026-03-14T09:26:53Z".into(),
                "date" => "2026-03-14".into(),
                "email" => "someone@example.com".into(),
                "uri" | "url" => "https://example.com/".into(),
                _ => "x".repeat(schema["minLength"].as_u64().unwrap_or(1).max(1) as usize),
            };
            Value::String(text)
        }
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

/// A JSON value of the wrong type for the schema.
fn wrong_type(doc: &Value, schema: &Value) -> Value {
    match resolve(doc, schema)["type"].as_str() {
        Some("string") => json!(12345),
        Some("integer" | "number") => json!("not a number"),
        Some("boolean") => json!("not a boolean"),
        Some("array") => json!("not an array"),
        _ => json!("not an object"),
    }
}

/// A body the schema refuses: `{}` when something is required, else every property of
/// the wrong type.
fn invalid_body(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
    match schema["properties"].as_object() {
        Some(properties) if !required => Value::Object(
            properties
                .iter()
                .map(|(name, p)| (name.clone(), wrong_type(doc, p)))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// A parameter value the parameter accepts.
fn param_value(doc: &Value, param: &Value) -> String {
    let schema = param.get("schema").map(|s| resolve(doc, s));
    if schema.is_some_and(|s| s["format"] == "uuid") {
        return Uuid::new_v4().to_string();
    }
    let value = param
        .get("example")
        .cloned()
        .or_else(|| schema.map(|s| example(doc, s)));
    match value {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => "x".into(),
        Some(other) => other.to_string(),
    }
}

/// A parameter value the parameter refuses, when one is easy to tell.
fn invalid_param(doc: &Value, param: &Value) -> Option<String> {
    let schema = resolve(doc, param.get("schema")?);
    if schema["format"] == "uuid" {
        return Some("not-a-uuid".into());
    }
    if schema.get("enum").is_some() {
        return Some("not-one-of-them".into());
    }
    match schema["type"].as_str() {
        Some("integer" | "number") => Some("not-a-number".into()),
        Some("boolean") => Some("not-a-boolean".into()),
        Some("string") if schema.get("pattern").is_some() => Some(" !".into()),
        Some("string") => schema["maxLength"]
            .as_u64()
            .map(|max| "x".repeat(max as usize + 1)),
        _ => None,
    }
}

fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request to send, without its credentials.
struct Probe {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (i, (k, v)) in self.query.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        for (k, v) in &self.headers {
            write!(f, " [{k}: {v}]")?;
        }
        if let Some(body) = &self.body {
            write!(f, " body {}", cut(body.to_string(), 120))?;
        }
        Ok(())
    }
}

/// The operation's request: valid (path parameters, required query and header
/// parameters and the body from the examples) or invalid (every parameter that can be
/// made wrong is wrong, and the body too).
fn probe(op: &Operation, valid: bool) -> Probe {
    let mut path = op.path.clone();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for param in &op.params {
        let name = param["name"].as_str().unwrap_or_default();
        let required = param["required"].as_bool().unwrap_or(false);
        let wrong = if valid {
            None
        } else {
            invalid_param(op.doc, param)
        };
        match param["in"].as_str() {
            Some("path") => {
                let value = wrong.unwrap_or_else(|| param_value(op.doc, param));
                path = path.replace(&format!("{{{name}}}"), &encode_segment(&value));
            }
            Some("query") if required || wrong.is_some() => {
                let value = wrong.unwrap_or_else(|| param_value(op.doc, param));
                query.push((name.to_string(), value));
            }
            Some("header") if required => {
                headers.push((name.to_string(), param_value(op.doc, param)));
            }
            _ => {}
        }
    }
    let body = op.body.map(|schema| {
        if valid {
            example(op.doc, schema)
        } else {
            invalid_body(op.doc, schema)
        }
    });
    Probe {
        method: op.method.clone(),
        path,
        query,
        headers,
        body,
    }
}

#[derive(Clone)]
enum Credentials {
    None,
    Bearer(String),
    Basic(String, String),
}

enum Expect {
    /// This status, with an RFC 9457 problem body saying it.
    Problem(u16),
    /// Anything but these.
    Not(&'static [u16]),
}

struct Walk {
    http: reqwest::Client,
    urls: BTreeMap<String, String>,
    violations: Vec<String>,
    requests: usize,
}

impl Walk {
    async fn check(
        &mut self,
        op: &Operation<'_>,
        case: &str,
        credentials: &Credentials,
        probe: &Probe,
        expect: Expect,
    ) {
        self.requests += 1;
        let base = &self.urls[op.service];
        let mut request = self
            .http
            .request(probe.method.clone(), format!("{base}{}", probe.path))
            .query(&probe.query);
        for (name, value) in &probe.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &probe.body {
            request = request.json(body);
        }
        if op.has(&Scheme::Secret) {
            // Events are also signed with the secret: sign what `json` sends, so that
            // only the credentials decide.
            let bytes = probe.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
            let signature = taproom_server::runtime::events::sign(
                EVENTS_TOKEN,
                bytes.as_deref().unwrap_or_default(),
            );
            request = request.header(taproom_server::runtime::events::SIGNATURE_HEADER, signature);
        }
        request = match credentials {
            Credentials::None => request,
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        let who = format!("{} {} [{case}]: {probe}", op.service, op.id);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.violations.push(format!("{who} -> no answer: {e}"));
                return;
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await.unwrap_or_default();
        let shown = summary(&text);
        let wrong = match expect {
            Expect::Problem(want) => {
                let body_status = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|b| b["status"].as_u64());
                if status != want {
                    Some(format!("expected {want}"))
                } else if !content_type.starts_with("application/problem+json") {
                    Some(format!(
                        "expected content-type application/problem+json, got {content_type:?}"
                    ))
                } else if body_status != Some(u64::from(want)) {
                    Some(format!("expected a problem body with status {want}"))
                } else {
                    None
                }
            }
            Expect::Not(refused) if refused.contains(&status) => {
                Some(format!("expected anything but {refused:?}"))
            }
            Expect::Not(_) => None,
        };
        if let Some(wrong) = wrong {
            self.violations
                .push(format!("{who} -> {status} {shown} ({wrong})"));
        }
    }
}

/// A response body in a line: a problem's title, detail and where validation failed;
/// anything else cut short.
fn summary(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(problem) if problem.get("title").is_some() => {
            let mut line = format!(
                "{}: {}",
                problem["title"].as_str().unwrap_or_default(),
                problem["detail"].as_str().unwrap_or_default()
            );
            let pointers: Vec<&str> = problem["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["pointer"].as_str())
                .collect();
            if !pointers.is_empty() {
                line.push_str(&format!(" [errors at {}]", pointers.join(", ")));
            }
            line
        }
        _ => cut(text.replace('\n', " "), 200),
    }
}

/// `text`, at most about `max` bytes of it.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Base64url JSON of a token part.
fn part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn sign(header: &Value, claims: &Value, key: &ed25519_dalek::SigningKey) -> String {
    let input = format!("{}.{}", part(header), part(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Tokens no service may accept, made from a real (customer's) token: each claims the
/// admin role.
fn forged_tokens(real: &str) -> Vec<(&'static str, String)> {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let stranger = ed25519_dalek::SigningKey::from_bytes(&seed);
    let header = decode_part(real, 0);
    let mut claims = decode_part(real, 1);
    claims["role"] = json!("admin");
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!(Uuid::new_v4().to_string());
    let signature = real.rsplit('.').next().unwrap();
    vec![
        (
            "forged: EdDSA JWT signed by an unknown key with an unknown kid",
            sign(&unknown_kid, &claims, &stranger),
        ),
        (
            "forged: EdDSA JWT with the real kid, signed by another key",
            sign(&header, &claims, &stranger),
        ),
        (
            "forged: the customer's JWT with role admin, signature kept",
            format!("{}.{}.{signature}", part(&header), part(&claims)),
        ),
        (
            "forged: unsigned JWT (alg none)",
            format!(
                "{}.{}.",
                part(&json!({"alg": "none", "typ": "JWT"})),
                part(&claims)
            ),
        ),
        ("forged: not a JWT", "not-a-jwt".to_string()),
    ]
}

async fn token(http: &reqwest::Client, users: &str, username: &str, password: &str) -> String {
    login(http, users, username, password).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `create_token`'s answer (access and refresh token) for a Basic login.
async fn login(http: &reqwest::Client, users: &str, username: &str, password: &str) -> Value {
    let response = http
        .post(format!("{users}/v1/auth/token"))
        .basic_auth(username, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "logging in as {username}");
    response.json().await.unwrap()
}

/// A real user: their token and role.
struct Identity {
    name: &'static str,
    token: String,
    role: String,
}

#[tokio::test]
async fn every_operation_enforces_the_security_its_spec_declares() {
    let started = Instant::now();
    let specs = bundled_specs();
    let services: Vec<&str> = specs.iter().map(|s| s.service.as_str()).collect();
    for service in taproom_server::SERVICES.iter().map(|s| &s.name) {
        assert!(
            services.contains(service),
            "no bundled document for the {service} service: {services:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let created = support::server()
        .current_dir(dir.path())
        .env("DATA_DIR", &data_dir)
        .env("TAPROOM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .args(["admin", "create", "--username", ADMIN_USERNAME])
        .args(["--email", "walk_admin@example.com"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "server admin create: {}",
        String::from_utf8_lossy(&created.stderr)
    );

    let ports: Vec<String> = services
        .iter()
        .map(|s| format!("{}_PORT", s.to_uppercase()))
        .collect();
    let mut env = vec![
        ("DATA_DIR", data_dir.as_str()),
        ("LOG_LEVEL", "warning"),
        ("GATEWAY", "false"),
        ("EVENTS_TOKEN", EVENTS_TOKEN),
    ];
    env.extend(ports.iter().map(|p| (p.as_str(), "0")));
    let server = support::ServerAll::start(dir.path(), &env, &services);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let users = server.url("users").to_string();
    // The customer registers with the spec's own example, so that the example
    // credentials of `create_token` are theirs.
    let users_spec = specs.iter().find(|s| s.service == "users").unwrap();
    let registration = operations(users_spec)
        .into_iter()
        .find(|op| op.method == Method::POST && op.path == "/v1/users")
        .and_then(|op| op.body.map(|schema| example(op.doc, schema)))
        .expect("POST /v1/users with a JSON body");
    let response = http
        .post(format!("{users}/v1/users"))
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "registering {registration}");
    let customer = token(
        &http,
        &users,
        registration["username"].as_str().unwrap(),
        registration["password"].as_str().unwrap(),
    )
    .await;
    let admin = token(&http, &users, ADMIN_USERNAME, ADMIN_PASSWORD).await;
    let identities = [("customer", customer), ("admin", admin)].map(|(name, token)| {
        let role = decode_part(&token, 1)["role"]
            .as_str()
            .expect("a role claim")
            .to_string();
        Identity { name, token, role }
    });
    assert_ne!(identities[0].role, identities[1].role);
    let forged = forged_tokens(&identities[0].token);

    let mut walk = Walk {
        http,
        urls: server.urls.clone(),
        violations: Vec::new(),
        requests: 0,
    };
    let (mut walked, mut public, mut protected, mut restricted, mut secret) = (0, 0, 0, 0, 0);
    let mut per_service = BTreeMap::new();
    for spec in &specs {
        let ops = operations(spec);
        per_service.insert(spec.service.clone(), ops.len());
        for op in &ops {
            walked += 1;
            let mut valid = probe(op, true);
            let invalid = probe(op, false);
            // The body's refresh token is the credential of `refresh_token` and `logout`:
            // a real one, from a new login each time (logging out ends its session).
            if let Some(Value::Object(body)) = valid.body.as_mut() {
                if body.contains_key("refresh_token") {
                    let (user, password) = (&registration["username"], &registration["password"]);
                    let pair = login(
                        &walk.http,
                        &users,
                        user.as_str().unwrap(),
                        password.as_str().unwrap(),
                    )
                    .await;
                    body.insert("refresh_token".into(), pair["refresh_token"].clone());
                }
            }
            let schemes = match &op.access {
                Access::Public => {
                    public += 1;
                    eprintln!("{:<10} {:<20} public", op.service, op.id);
                    walk.check(
                        op,
                        "public, no credentials",
                        &Credentials::None,
                        &valid,
                        Expect::Not(&[401]),
                    )
                    .await;
                    continue;
                }
                Access::Protected(schemes) => schemes,
            };
            protected += 1;
            eprintln!(
                "{:<10} {:<20} {schemes:?}{}",
                op.service,
                op.id,
                op.roles
                    .as_ref()
                    .map(|r| format!(" roles {r:?}"))
                    .unwrap_or_default()
            );
            for (case, probe) in [
                ("no credentials, valid request", &valid),
                ("no credentials, invalid request", &invalid),
            ] {
                walk.check(op, case, &Credentials::None, probe, Expect::Problem(401))
                    .await;
            }
            if op.has(&Scheme::Jwt) {
                for (case, token) in &forged {
                    let bearer = Credentials::Bearer(token.clone());
                    walk.check(op, case, &bearer, &valid, Expect::Problem(401))
                        .await;
                }
                for who in &identities {
                    let bearer = Credentials::Bearer(who.token.clone());
                    let allowed = op.roles.as_ref().is_none_or(|r| r.contains(&who.role));
                    if allowed {
                        let case = format!("{}'s real token", who.name);
                        let refused: &[u16] = if op.roles.is_some() {
                            &[401, 403]
                        } else {
                            &[401]
                        };
                        walk.check(op, &case, &bearer, &valid, Expect::Not(refused))
                            .await;
                    } else {
                        for (how, probe) in [("valid", &valid), ("invalid", &invalid)] {
                            let case = format!("{} (role {}), {how} request", who.name, who.role);
                            walk.check(op, &case, &bearer, probe, Expect::Problem(403))
                                .await;
                        }
                    }
                }
            }
            if op.roles.is_some() {
                restricted += 1;
            }
            if op.has(&Scheme::Secret) {
                secret += 1;
                if !op.has(&Scheme::Jwt) {
                    for who in &identities {
                        let case =
                            format!("{}'s user token instead of the shared secret", who.name);
                        let bearer = Credentials::Bearer(who.token.clone());
                        walk.check(op, &case, &bearer, &valid, Expect::Problem(401))
                            .await;
                    }
                }
                let wrong = Credentials::Bearer(format!("{EVENTS_TOKEN}-but-wrong"));
                walk.check(
                    op,
                    "wrong shared secret",
                    &wrong,
                    &valid,
                    Expect::Problem(401),
                )
                .await;
                let right = Credentials::Bearer(EVENTS_TOKEN.to_string());
                walk.check(op, "the shared secret", &right, &valid, Expect::Not(&[401]))
                    .await;
            }
            if op.has(&Scheme::Basic) {
                // An account that does not exist: failures for a real one would lock it.
                let nobody = format!("nobody_{}", Uuid::new_v4().simple());
                let wrong = Credentials::Basic(nobody, "not the password".into());
                walk.check(
                    op,
                    "wrong Basic credentials",
                    &wrong,
                    &valid,
                    Expect::Problem(401),
                )
                .await;
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "walked {walked} operations ({per_service:?}): {public} public, {protected} protected, \
         {restricted} role-restricted, {secret} with a shared secret; {} requests, \
         {elapsed:.1?} with the start-up",
        walk.requests
    );
    // The walk cannot pass by finding nothing to check.
    assert!(
        restricted > 0,
        "no operation declares x-roles: no role was checked"
    );
    assert!(secret > 0, "no operation uses the shared events secret");
    let stderr = server.stderr();
    drop(server);

    assert!(
        walked >= MIN_OPERATIONS,
        "only {walked} operations found: {per_service:?}"
    );
    for (service, count) in &per_service {
        assert!(*count > 0, "no operation in {service}'s document");
    }
    assert!(protected > 0, "no protected operation found");
    assert!(public > 0, "no public operation found");
    assert!(
        walk.violations.is_empty(),
        "{} of {} requests were not answered as the spec's security says:\n{}\n\
         server all's stderr:\n{stderr}",
        walk.violations.len(),
        walk.requests,
        walk.violations.join("\n")
    );
}
