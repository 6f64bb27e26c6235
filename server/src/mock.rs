//! `server mock <service | spec.yaml>`: serves any OpenAPI 3.0 document from its examples
//! (Connexion's `--mock`, Prism's idea), so a client, a front end or another service can
//! be built and tested against an API before (or without) its implementation, its
//! database or its peers. Requests get exactly the checks and problems of the real
//! services (security first, then path, query, headers and JSON body, validated by the
//! same compiled `Validators` of the mock's own `Spec`); answers come from the document:
//! an example, else a value generated from the schema that validates against it.
//!
//! Nothing is stored and no credential is verified: any `Authorization` header satisfies
//! a protected operation. `Prefer: code=404` and `Prefer: example=<name>` choose the
//! answer, as with Prism.

use crate::runtime::config::Config;
use crate::runtime::extract::{deref, is_json, read_json};
use crate::runtime::schema::compile;
use crate::runtime::{auth, docs, etag, infra, Problem, Spec, SpecContext};
use anyhow::{anyhow, bail, Context as _, Result};
use dropshot::{
    ApiDescription, ApiEndpoint, ApiEndpointBodyContentType, ApiEndpointParameter,
    ApiEndpointParameterLocation, ApiEndpointVersions, Body, HttpServer, RawRequest,
    RequestContext, SharedExtractor,
};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Port of a mocked file when `--port` is not given (Prism's).
pub const DEFAULT_PORT: u16 = 4010;

/// The methods that have operations: the same as the validators compile.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// What to mock: one of `crate::SERVICES` (its embedded spec) or a bundled document read
/// from a file.
pub struct Target {
    /// The service's name, or the file's stem.
    pub name: &'static str,
    /// The document (YAML, or JSON, which is YAML too).
    pub yaml: &'static str,
    /// The service mocked, when the target is one.
    pub service: Option<&'static str>,
}

impl Target {
    /// A service name, else a path to a bundled OpenAPI 3.0 document.
    pub fn resolve(arg: &str) -> Result<Target> {
        if let Some(def) = crate::runtime::registry::find(arg) {
            return Ok(Target {
                name: def.name,
                yaml: def.spec,
                service: Some(def.name),
            });
        }
        let path = std::path::Path::new(arg);
        if !path.is_file() {
            bail!(
                "{arg:?} is neither a service ({}) nor a spec file",
                crate::runtime::registry::names()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("mock")
            .to_string();
        // One mock per process and file: the server keeps both for its whole life.
        Ok(Target {
            name: Box::leak(name.into_boxed_str()),
            yaml: Box::leak(text.into_boxed_str()),
            service: None,
        })
    }

    /// Where to listen: `--port`, else the service's configured port (`<NAME>_PORT`),
    /// else `DEFAULT_PORT`.
    pub fn port(&self, config: &Config, flag: Option<u16>) -> u16 {
        flag.or(self.service.map(|s| config.service(s).port))
            .unwrap_or(DEFAULT_PORT)
    }
}

/// Refuses what the mock cannot serve faithfully: another OpenAPI version, or a document
/// whose `$ref`s leave it (the validators resolve local references only).
fn check_document(name: &str, doc: &Value) -> Result<()> {
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.0") {
        let what = match version {
            "" => "a document without `openapi`".to_string(),
            v => format!("`openapi: {v}`"),
        };
        bail!("{name}: {what} is not OpenAPI 3.0, the only version the mock serves");
    }
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        match r.strip_prefix('#') {
            Some(pointer) if doc.pointer(pointer).is_some() => {}
            Some(_) => bail!("{name}: $ref {r:?} resolves to nothing in the document"),
            None => bail!(
                "{name}: $ref {r:?} points outside the document; the mock needs a bundled \
                 document (one file, local `#/components/...` refs only), such as \
                 openapi/bundled/<service>.yaml from `cargo xtask gen`"
            ),
        }
    }
    Ok(())
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// One alternative of an operation's `security`: every scheme it names must be present.
type Requirement = Vec<Scheme>;

/// Where a security scheme's credentials travel (only their presence is checked).
#[derive(Debug, Clone)]
enum Scheme {
    /// `http` (bearer, basic, …), `oauth2`, `openIdConnect`: the `Authorization` header.
    Authorization {
        basic: bool,
    },
    ApiKeyHeader(String),
    ApiKeyQuery(String),
    ApiKeyCookie(String),
}

/// What the handler needs to know about one operation, read from the document once.
struct Operation {
    /// The operation object itself.
    op: Value,
    /// Alternatives; empty: public (no `security`, `security: []`, or a `{}` alternative).
    security: Vec<Requirement>,
    has_path: bool,
    has_query: bool,
    /// `Some(optional)` when the operation takes a JSON body.
    json_body: Option<bool>,
}

impl Operation {
    fn read(doc: &Value, shared: &[Value], op: &Value) -> Operation {
        let params: Vec<&Value> = shared
            .iter()
            .chain(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            )
            .map(|p| deref(doc, p))
            .collect();
        let located = |loc: &str| {
            params
                .iter()
                .any(|p| p.get("in").and_then(Value::as_str) == Some(loc))
        };
        let body = op.get("requestBody").map(|b| deref(doc, b));
        let json_body = body
            .and_then(|b| b.get("content").and_then(Value::as_object))
            .filter(|content| content.keys().any(|m| is_json(m)))
            .map(|_| {
                !body
                    .and_then(|b| b.get("required"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            });
        let requirements = op
            .get("security")
            .or_else(|| doc.get("security"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut security = Vec::new();
        for requirement in &requirements {
            let names: Vec<&String> = requirement
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            if names.is_empty() {
                // An empty alternative: anyone may call.
                security.clear();
                break;
            }
            let schemes = names
                .iter()
                .map(|name| {
                    let scheme = doc
                        .pointer(&format!("/components/securitySchemes/{name}"))
                        .map(|s| deref(doc, s))
                        .unwrap_or(&Value::Null);
                    let text = |k: &str| scheme.get(k).and_then(Value::as_str).unwrap_or("");
                    match (text("type"), text("in")) {
                        ("apiKey", "header") => Scheme::ApiKeyHeader(text("name").into()),
                        ("apiKey", "query") => Scheme::ApiKeyQuery(text("name").into()),
                        ("apiKey", "cookie") => Scheme::ApiKeyCookie(text("name").into()),
                        _ => Scheme::Authorization {
                            basic: text("type") == "http"
                                && text("scheme").eq_ignore_ascii_case("basic"),
                        },
                    }
                })
                .collect();
            security.push(schemes);
        }
        Operation {
            op: op.clone(),
            security,
            has_path: located("path"),
            has_query: located("query"),
            json_body,
        }
    }

    /// `Ok` when the request carries credentials for some alternative (none verified).
    fn authorize(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
        rid: &str,
    ) -> Result<(), Problem> {
        let present = |scheme: &Scheme| match scheme {
            Scheme::Authorization { .. } => headers.contains_key(header::AUTHORIZATION),
            Scheme::ApiKeyHeader(name) => headers.contains_key(name.as_str()),
            Scheme::ApiKeyQuery(name) => query.iter().any(|(n, _)| n == name),
            Scheme::ApiKeyCookie(name) => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .any(|pair| pair.trim().split('=').next() == Some(name.as_str())),
        };
        if self.security.is_empty() || self.security.iter().any(|r| r.iter().all(&present)) {
            return Ok(());
        }
        let basic_only = self
            .security
            .iter()
            .flatten()
            .all(|s| matches!(s, Scheme::Authorization { basic: true }));
        if basic_only {
            return Err(Problem::new(
                401,
                "Authentication required: send HTTP Basic credentials (the mock accepts any).",
            )
            .request(rid)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"taproom\""));
        }
        let wanted: Vec<String> = self
            .security
            .iter()
            .flatten()
            .map(|s| match s {
                Scheme::Authorization { .. } => "an `Authorization` header".to_string(),
                Scheme::ApiKeyHeader(n) => format!("the `{n}` header"),
                Scheme::ApiKeyQuery(n) => format!("the `{n}` query parameter"),
                Scheme::ApiKeyCookie(n) => format!("the `{n}` cookie"),
            })
            .collect();
        Err(auth::unauthorized(
            rid,
            &format!(
                "send {} (the mock accepts any value)",
                dedup(wanted).join(" or ")
            ),
            false,
        ))
    }

    /// Query parameters that carry credentials are not the operation's parameters.
    fn credential_params(&self) -> Vec<&str> {
        self.security
            .iter()
            .flatten()
            .filter_map(|s| match s {
                Scheme::ApiKeyQuery(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    items.retain(|i| {
        let new = !seen.contains(i);
        seen.push(i.clone());
        new
    });
    items
}

/// The mock server's context: its own spec (with the compiled validators) and what it
/// read about each operation.
pub struct Mock {
    spec: Spec,
    operations: HashMap<String, Operation>,
}

impl SpecContext for Mock {
    fn served_spec(&self) -> &Spec {
        &self.spec
    }
}

/// Resolves `target`, then starts its mock on `--port`, else the service's configured port,
/// else `DEFAULT_PORT`.
pub fn start_target(
    target: &str,
    port: Option<u16>,
    config: &Config,
    log: &slog::Logger,
) -> Result<HttpServer<Mock>> {
    let target = Target::resolve(target)?;
    let bind = SocketAddr::new(config.bind_address, target.port(config, port));
    start(target.name, target.yaml, config, log, bind)
}

/// Starts a mock of the bundled document `yaml` (named `name` in logs and problems) on
/// `bind`. Each mock validates against its own document, so several in one process are
/// independent, even when they share operationIds.
pub fn start(
    name: &'static str,
    yaml: &'static str,
    config: &Config,
    log: &slog::Logger,
    bind: SocketAddr,
) -> Result<HttpServer<Mock>> {
    let doc: Value =
        serde_yaml::from_str(yaml).with_context(|| format!("{name}: not YAML or JSON"))?;
    check_document(name, &doc)?;
    let spec = Spec::parse(name, yaml)?;
    let mut api = ApiDescription::new();
    let mut operations = HashMap::new();
    let mut routes: Vec<(String, String)> = Vec::new();
    let mut router = Routes::default();
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (path, item) in &paths {
        let item = deref(&doc, item);
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                bail!(
                    "{name}: {} {path} has no operationId; the mock (like the services) \
                     names and validates operations by it",
                    method.to_uppercase()
                );
            };
            let vars = router
                .add(path)
                .map_err(|e| anyhow!("{name}: {} {path}: {e}", method.to_uppercase()))?;
            anyhow::ensure!(
                spec.validators.get(id).is_some(),
                "{name}: operation {id} has no validator"
            );
            let mut endpoint = ApiEndpoint::new(
                id.to_string(),
                answer,
                Method::from_bytes(method.to_uppercase().as_bytes())?,
                "application/json",
                path,
                ApiEndpointVersions::All,
            )
            .visible(false);
            endpoint
                .parameters
                .extend(vars.into_iter().map(path_parameter));
            api.register(endpoint)
                .map_err(|e| anyhow!("{name}: {} {path}: {e}", method.to_uppercase()))?;
            operations.insert(id.to_string(), Operation::read(&doc, &shared, op));
            routes.push((path.clone(), method.to_uppercase()));
        }
    }
    // The document and its page, unless the document has paths of its own there (the
    // combined gateway page belongs to `server all`, not to a mock).
    for endpoint in infra::endpoints::<Mock>()
        .into_iter()
        .chain(docs::endpoints::<Mock>())
        .filter(|e| !e.operation_id.starts_with("gateway_"))
    {
        if !paths.contains_key(&endpoint.path) && router.add(&endpoint.path).is_ok() {
            routes.push((endpoint.path.clone(), "GET".into()));
            api.register(endpoint).map_err(|e| anyhow!("{name}: {e}"))?;
        }
    }
    let mock = Mock { spec, operations };
    crate::runtime::server::listen(api, mock, config, log, name, bind, &routes)
}

/// The path templates registered so far, checked the way dropshot's router would refuse
/// them (it panics), so a document it cannot route is an error instead.
#[derive(Default)]
struct Routes {
    /// Per prefix (variables written `{}`), the literal segments or the variable that
    /// follow it.
    edges: HashMap<Vec<String>, Edge>,
}

enum Edge {
    Literals,
    Variable(String),
}

impl Routes {
    /// Adds `path`; returns its variables.
    fn add(&mut self, path: &str) -> Result<Vec<String>, String> {
        let mut prefix = Vec::new();
        let mut vars = Vec::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let var = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|v| !v.contains(['{', '}', ':']));
            if var.is_none() && segment.contains(['{', '}']) {
                return Err(format!(
                    "segment {segment:?} mixes a variable with text; only whole-segment \
                     variables can be routed"
                ));
            }
            match (var, self.edges.get(&prefix)) {
                (Some(v), Some(Edge::Variable(existing))) if existing != v => {
                    return Err(format!(
                        "variable {{{v}}} is {{{existing}}} in another path at the same place"
                    ))
                }
                (Some(_), Some(Edge::Literals)) | (None, Some(Edge::Variable(_))) => {
                    return Err(
                        "another path has a literal segment where this one has a variable, \
                         or the reverse, which the router cannot tell apart"
                            .into(),
                    )
                }
                (Some(v), None) => {
                    self.edges.insert(prefix.clone(), Edge::Variable(v.into()));
                }
                (None, None) => {
                    self.edges.insert(prefix.clone(), Edge::Literals);
                }
                _ => {}
            }
            match var {
                Some(v) if vars.iter().any(|seen| seen == v) => {
                    return Err(format!("variable {{{v}}} appears twice"))
                }
                Some(v) => {
                    vars.push(v.to_string());
                    prefix.push("{}".into());
                }
                None => prefix.push(segment.into()),
            }
        }
        Ok(vars)
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct OneVariable {
    #[allow(dead_code)]
    v: String,
}

/// A path parameter named `name` for an endpoint's metadata (dropshot checks that every
/// variable of the template is one; the values are validated from the document).
fn path_parameter(name: String) -> ApiEndpointParameter {
    let mut metadata = <dropshot::Path<OneVariable> as SharedExtractor>::metadata(
        ApiEndpointBodyContentType::Json,
    );
    let template = metadata.parameters.remove(0);
    ApiEndpointParameter::new_named(
        &ApiEndpointParameterLocation::Path,
        name,
        None,
        true,
        template.schema,
        vec![],
    )
}

/// Every operation's handler: security, then the request checks of the real services,
/// then the answer the document describes.
async fn answer(rqctx: RequestContext<Mock>, raw: RawRequest) -> Result<Response<Body>, Problem> {
    let rid = rqctx.request_id.clone();
    let mock = rqctx.context();
    let id = rqctx.endpoint.operation_id.as_str();
    let (Some(operation), Some(checks)) = (mock.operations.get(id), mock.spec.validators.get(id))
    else {
        slog::error!(rqctx.log, "operation has no validator"; "operation_id" => id);
        return Err(Problem::new(500, "The server is misconfigured.").request(&rid));
    };
    let headers = rqctx.request.headers();
    let query_text = rqctx.request.uri().query();
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(query_text.unwrap_or("")).unwrap_or_default();
    operation.authorize(headers, &query, &rid)?;

    if operation.has_path {
        let path =
            <dropshot::Path<BTreeMap<String, String>> as SharedExtractor>::from_request(&rqctx)
                .await
                .map_err(|e| Problem::from(e).request(&rid))?
                .into_inner();
        let path: Vec<(String, String)> = path.into_iter().collect();
        checks.path(&path).map_err(|p| p.request(&rid))?;
    }
    if operation.has_query {
        let credentials = operation.credential_params();
        let own = if credentials.is_empty() {
            query_text.map(str::to_string)
        } else {
            let kept: Vec<&(String, String)> = query
                .iter()
                .filter(|(n, _)| !credentials.contains(&n.as_str()))
                .collect();
            serde_urlencoded::to_string(kept).ok()
        };
        checks.query(own.as_deref()).map_err(|p| p.request(&rid))?;
    }
    checks.headers(headers).map_err(|p| p.request(&rid))?;
    if let Some(optional) = operation.json_body {
        let body = read_json(raw.into_inner(), rqctx.request_body_max_bytes(), optional)
            .await
            .map_err(|p| p.request(&rid))?;
        if let Some(value) = body {
            let errors = checks.body_violations(&value);
            if !errors.is_empty() {
                return Err(Problem::validation(errors).request(&rid));
            }
        }
    }

    let prefer = Prefer::read(headers);
    respond(
        &mock.spec.value,
        &operation.op,
        &prefer,
        &rid,
        rqctx.request.uri().path(),
    )
    .map_err(|p| p.request(&rid))
}

/// The `Prefer` preferences the mock honours (RFC 7240; others are ignored).
#[derive(Default, Debug)]
struct Prefer {
    code: Option<String>,
    example: Option<String>,
}

impl Prefer {
    fn read(headers: &HeaderMap) -> Prefer {
        let mut prefer = Prefer::default();
        for value in headers.get_all("prefer") {
            let Ok(text) = value.to_str() else { continue };
            for token in text.split([',', ';']) {
                let Some((key, value)) = token.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"').to_string();
                match key.trim().to_ascii_lowercase().as_str() {
                    "code" => prefer.code = Some(value),
                    "example" => prefer.example = Some(value),
                    _ => {}
                }
            }
        }
        prefer
    }
}

/// The declared response for `wanted` (an exact code, else its range `4XX`, else
/// `default`), or by default the lowest declared 2xx.
fn choose_status<'a>(
    responses: &'a Map<String, Value>,
    wanted: Option<&str>,
) -> Result<(u16, &'a Value), Problem> {
    let declared = || responses.keys().cloned().collect::<Vec<_>>().join(", ");
    let Some(wanted) = wanted else {
        let lowest = responses
            .iter()
            .filter_map(|(k, v)| k.parse::<u16>().ok().map(|c| (c, v)))
            .filter(|(c, _)| (200..300).contains(c))
            .min_by_key(|(c, _)| *c);
        let range = || {
            responses
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("2XX") || *k == "default")
                .map(|(_, v)| (200, v))
        };
        return lowest.or_else(range).ok_or_else(|| {
            Problem::new(
                500,
                format!(
                    "The operation declares no success response (it declares {}); \
                     send `Prefer: code=<status>`.",
                    declared()
                ),
            )
        });
    };
    let code = wanted
        .parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "`Prefer: code={wanted}` is not an HTTP status code."
            ))
        })?;
    let range = format!("{}XX", code / 100);
    responses
        .get(&code.to_string())
        .or_else(|| {
            responses
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&range))
                .map(|(_, v)| v)
        })
        .or_else(|| responses.get("default"))
        .map(|v| (code, v))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "`Prefer: code={code}`: the operation declares no {code} response; it declares {}.",
                declared()
            ))
        })
}

/// The media type to answer with: JSON first, then any `+json`, then the first declared.
fn choose_media(content: &Map<String, Value>) -> Option<(&String, &Value)> {
    content
        .iter()
        .find(|(m, _)| m.as_str() == "application/json")
        .or_else(|| content.iter().find(|(m, _)| is_json(m)))
        .or_else(|| content.iter().next())
}

/// The answer to a request that passed every check.
fn respond(
    doc: &Value,
    op: &Value,
    prefer: &Prefer,
    rid: &str,
    request_path: &str,
) -> Result<Response<Body>, Problem> {
    let empty = Map::new();
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let (status, response) = choose_status(responses, prefer.code.as_deref())?;
    let response = deref(doc, response);
    let media = response
        .get("content")
        .and_then(Value::as_object)
        .and_then(choose_media);
    let bodiless = status == 204 || status == 304 || status < 200;
    let body: Option<(&String, Value)> = match (media, &prefer.example) {
        (_, Some(name)) => {
            let (media_type, media) = media.ok_or_else(|| {
                Problem::bad_request(format!(
                    "`Prefer: example={name}`: the {status} response has no content, so no examples."
                ))
            })?;
            Some((media_type, named_example(doc, media, name, status)?))
        }
        (None, None) => None,
        (Some(_), None) if bodiless => None,
        (Some((media_type, media)), None) => {
            let value = if media_type.contains("problem") {
                explicit_example(doc, media).unwrap_or_else(|| problem(doc, media, status, rid))
            } else {
                media_example(doc, media, Direction::Response)
            };
            Some((media_type, value))
        }
    };
    let mut builder = Response::builder().status(
        StatusCode::from_u16(status).map_err(|_| Problem::bad_request("Not an HTTP status."))?,
    );
    if let Some((media_type, _)) = &body {
        builder = builder.header(header::CONTENT_TYPE, media_type.as_str());
    }
    let value = body.as_ref().map(|(_, v)| v);
    for (name, declared) in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        let text = header_value(doc, name, deref(doc, declared), value, request_path);
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(&text),
        ) {
            builder = builder.header(n, v);
        }
    }
    let bytes = match &body {
        None => Vec::new(),
        Some((media_type, Value::String(s))) if !is_json(media_type) => s.clone().into_bytes(),
        Some((_, v)) => serde_json::to_vec(v).unwrap_or_default(),
    };
    builder
        .body(Body::from(bytes))
        .map_err(|e| Problem::new(500, format!("The mock could not build its answer: {e}.")))
}

/// A problem for a problem response the document gives no example of: a real one, if it
/// validates against the declared schema, else a value generated from that schema.
fn problem(doc: &Value, media: &Value, status: u16, rid: &str) -> Value {
    let problem = Problem::new(
        status,
        format!("A mock answer: the operation declares a {status} response."),
    )
    .request(rid);
    let value = serde_json::to_value(&problem).unwrap_or_default();
    match media.get("schema") {
        Some(schema) if !compile(doc, schema).is_ok_and(|v| v.is_valid(&value)) => {
            generate(doc, schema, Direction::Response)
        }
        _ => value,
    }
}

/// The named example `name` of a media type, or a 400 problem listing the names there are.
fn named_example(doc: &Value, media: &Value, name: &str, status: u16) -> Result<Value, Problem> {
    let examples = media.get("examples").and_then(Value::as_object);
    if let Some(example) = examples.and_then(|e| e.get(name)) {
        return Ok(deref(doc, example)
            .get("value")
            .cloned()
            .unwrap_or(Value::Null));
    }
    let names: Vec<&str> = examples
        .into_iter()
        .flat_map(|e| e.keys())
        .map(String::as_str)
        .collect();
    Err(Problem::bad_request(if names.is_empty() {
        format!("`Prefer: example={name}`: the {status} response has no named examples.")
    } else {
        format!(
            "`Prefer: example={name}`: the {status} response has no such example; it has {}.",
            names.join(", ")
        )
    }))
}

/// The example the document gives for a media type: its `example`, else the first of its
/// `examples`, else its schema's `example` (following `$ref`).
pub fn explicit_example(doc: &Value, media: &Value) -> Option<Value> {
    if let Some(example) = media.get("example") {
        return Some(example.clone());
    }
    if let Some(first) = media
        .get("examples")
        .and_then(Value::as_object)
        .and_then(|e| e.values().next())
    {
        if let Some(value) = deref(doc, first).get("value") {
            return Some(value.clone());
        }
    }
    media
        .get("schema")
        .map(|s| deref(doc, s))
        .and_then(|s| s.get("example"))
        .cloned()
}

/// A body for a media type: its example (`explicit_example`), else one generated from its
/// schema.
pub fn media_example(doc: &Value, media: &Value, direction: Direction) -> Value {
    explicit_example(doc, media).unwrap_or_else(|| {
        media
            .get("schema")
            .map(|s| generate(doc, s, direction))
            .unwrap_or(Value::Null)
    })
}

/// The value of a declared response header: its example, else (for the usual ones) what
/// the real services send, else one generated from its schema.
fn header_value(
    doc: &Value,
    name: &str,
    declared: &Value,
    body: Option<&Value>,
    request_path: &str,
) -> String {
    let schema = declared.get("schema").map(|s| deref(doc, s));
    let example = declared
        .get("example")
        .or_else(|| {
            declared
                .get("examples")
                .and_then(Value::as_object)
                .and_then(|e| e.values().next())
                .and_then(|e| deref(doc, e).get("value"))
        })
        .or_else(|| schema.and_then(|s| s.get("example")));
    let value = match (example, name.to_ascii_lowercase().as_str()) {
        (Some(example), _) => example.clone(),
        (None, "etag") => Value::String(etag::of(&body.cloned().unwrap_or(Value::Null))),
        (None, "location") => {
            let id = body.and_then(|b| b.get("id")).and_then(Value::as_str);
            Value::String(match id {
                Some(id) if !request_path.ends_with(id) => {
                    format!("{}/{id}", request_path.trim_end_matches('/'))
                }
                _ => request_path.to_string(),
            })
        }
        (None, "retry-after") => Value::String("5".into()),
        (None, "www-authenticate") => Value::String("Bearer realm=\"taproom\"".into()),
        (None, _) => schema
            .map(|s| generate(doc, s, Direction::Response))
            .unwrap_or(Value::String(String::new())),
    };
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Values from schemas.

/// Which way a generated value travels: requests leave out `readOnly` properties,
/// responses `writeOnly` ones (unless required).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// A value that validates against `schema` (an OpenAPI 3.0 schema of `doc`), made
/// deterministically: the schema's `example` where it has one, else the first `enum`
/// value, else one built from its type and constraints (every required property and, near
/// the top, the optional ones; strings honour `format`, `pattern` and lengths; numbers
/// their bounds; arrays `minItems`; `allOf` merged, the first fitting `oneOf`/`anyOf`).
pub fn generate(doc: &Value, schema: &Value, direction: Direction) -> Value {
    Generator { doc, direction }.value(schema, 0)
}

struct Generator<'a> {
    doc: &'a Value,
    direction: Direction,
}

/// Optional properties are filled in down to this depth; below it only required ones.
const OPTIONAL_DEPTH: usize = 4;
/// Past this depth (a recursive schema that requires itself), generation gives up.
const MAX_DEPTH: usize = 24;

impl Generator<'_> {
    fn value(&self, schema: &Value, depth: usize) -> Value {
        let schema = deref(self.doc, schema);
        let Some(object) = schema.as_object() else {
            return Value::Null;
        };
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(example) = object.get("example") {
            return example.clone();
        }
        if let Some(first) = object
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.iter().find(|v| !v.is_null()).or(e.first()))
        {
            return first.clone();
        }
        if let Some(parts) = object.get("allOf").and_then(Value::as_array) {
            let mut merged = object.clone();
            merged.remove("allOf");
            for part in parts {
                let part = deref(self.doc, part);
                // A part's own allOf is merged first, so nesting flattens.
                let part = match part.get("allOf") {
                    Some(_) => self.flatten(part),
                    None => part.clone(),
                };
                merge(&mut merged, &part);
            }
            return self.value(&Value::Object(merged), depth);
        }
        for key in ["oneOf", "anyOf"] {
            let Some(alternatives) = object.get(key).and_then(Value::as_array) else {
                continue;
            };
            let mut base = object.clone();
            base.remove(key);
            let validator = compile(self.doc, schema).ok();
            let mut first = None;
            for alternative in alternatives {
                let mut merged = base.clone();
                merge(&mut merged, &self.flatten(deref(self.doc, alternative)));
                let candidate = self.value(&Value::Object(merged), depth);
                if validator.as_ref().is_none_or(|v| v.is_valid(&candidate)) {
                    return candidate;
                }
                first.get_or_insert(candidate);
            }
            return first.unwrap_or(Value::Null);
        }
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                if object.contains_key("properties") || object.contains_key("additionalProperties")
                {
                    "object"
                } else if object.contains_key("items") {
                    "array"
                } else if ["minLength", "maxLength", "pattern", "format"]
                    .iter()
                    .any(|k| object.contains_key(*k))
                {
                    "string"
                } else if ["minimum", "maximum", "multipleOf"]
                    .iter()
                    .any(|k| object.contains_key(*k))
                {
                    "number"
                } else {
                    "object"
                }
            });
        match kind {
            "string" => Value::String(self.string(object)),
            "integer" => integer(object),
            "number" => number(object),
            "boolean" => Value::Bool(true),
            "array" => self.array(object, depth),
            "null" => Value::Null,
            _ => self.object(object, depth),
        }
    }

    /// `schema` with its `allOf` (recursively) merged into it.
    fn flatten(&self, schema: &Value) -> Value {
        let Some(object) = schema.as_object() else {
            return schema.clone();
        };
        let mut merged = object.clone();
        if let Some(Value::Array(parts)) = merged.remove("allOf") {
            for part in &parts {
                merge(&mut merged, &self.flatten(deref(self.doc, part)));
            }
        }
        Value::Object(merged)
    }

    fn object(&self, schema: &Map<String, Value>, depth: usize) -> Value {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut out = Map::new();
        for (name, property) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let must = required.contains(&name.as_str());
            let resolved = deref(self.doc, property);
            let hidden = match self.direction {
                Direction::Request => resolved.get("readOnly"),
                Direction::Response => resolved.get("writeOnly"),
            }
            .and_then(Value::as_bool)
            .unwrap_or(false);
            if must || (depth < OPTIONAL_DEPTH && !hidden) {
                out.insert(name.clone(), self.value(property, depth + 1));
            }
        }
        // Required names without a property schema, and `minProperties`, are filled from
        // `additionalProperties` (when it allows any).
        let extra = schema.get("additionalProperties");
        if extra != Some(&Value::Bool(false)) {
            let extra_schema = match extra {
                Some(Value::Object(_)) => extra.cloned().unwrap_or_default(),
                _ => serde_json::json!({"type": "string"}),
            };
            for name in &required {
                if !out.contains_key(*name) {
                    out.insert(name.to_string(), self.value(&extra_schema, depth + 1));
                }
            }
            let min = schema
                .get("minProperties")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let mut n = 1;
            while out.len() < min {
                out.insert(format!("property{n}"), self.value(&extra_schema, depth + 1));
                n += 1;
            }
        }
        Value::Object(out)
    }

    fn array(&self, schema: &Map<String, Value>, depth: usize) -> Value {
        let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        // One item shows what the items look like; deep down, only what is required.
        let wanted = if depth < OPTIONAL_DEPTH {
            min.max(1)
        } else {
            min
        };
        let count = wanted.min(max);
        let items = schema
            .get("items")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let item = self.value(&items, depth + 1);
        Value::Array(vec![item; count as usize])
    }

    fn string(&self, schema: &Map<String, Value>) -> String {
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let mut candidates = Vec::new();
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            if let Some(text) = formatted(format) {
                candidates.push(text.to_string());
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if let Some(text) = pattern_string(pattern, min, max) {
                candidates.push(text);
            }
        }
        candidates.push(sized("string", min, max));
        // The string keywords alone: enough to tell whether a candidate fits.
        let mut keywords = Map::new();
        for key in ["minLength", "maxLength", "pattern", "format"] {
            if let Some(v) = schema.get(key) {
                keywords.insert(key.into(), v.clone());
            }
        }
        let fits = compile(self.doc, &Value::Object(keywords)).ok();
        candidates
            .iter()
            .find(|c| {
                fits.as_ref()
                    .is_none_or(|v| v.is_valid(&Value::String(c.to_string())))
            })
            .or(candidates.last())
            .cloned()
            .unwrap_or_default()
    }
}

/// Merges the keywords of `part` into `into` as `allOf` means them: properties and
/// required lists united, the tighter of two bounds kept, otherwise the first word wins.
fn merge(into: &mut Map<String, Value>, part: &Value) {
    let Some(part) = part.as_object() else { return };
    for (key, value) in part {
        match (key.as_str(), into.get_mut(key)) {
            (_, None) => {
                into.insert(key.clone(), value.clone());
            }
            ("properties", Some(Value::Object(existing))) => {
                for (name, schema) in value.as_object().into_iter().flatten() {
                    existing
                        .entry(name.clone())
                        .or_insert_with(|| schema.clone());
                }
            }
            ("required", Some(Value::Array(existing))) => {
                for name in value.as_array().into_iter().flatten() {
                    if !existing.contains(name) {
                        existing.push(name.clone());
                    }
                }
            }
            ("minimum" | "minLength" | "minItems" | "minProperties", Some(existing))
                if value.as_f64() > existing.as_f64() =>
            {
                *existing = value.clone();
            }
            ("maximum" | "maxLength" | "maxItems" | "maxProperties", Some(existing))
                if value.as_f64() < existing.as_f64() =>
            {
                *existing = value.clone();
            }
            _ => {}
        }
    }
}

/// A conventional value for a string `format`.
fn formatted(format: &str) -> Option<&'static str> {
    Some(match format {
        "uuid" => "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "date-time" => "2024-01-01T00:00:00Z",
        "date" => "2024-01-01",
        "time" => "00:00:00Z",
        "email" => "user@example.com",
        "uri" | "url" | "iri" => "https://example.com/",
        "uri-reference" | "iri-reference" => "/example",
        "hostname" | "idn-hostname" => "example.com",
        "ipv4" => "192.0.2.1",
        "ipv6" => "2001:db8::1",
        "byte" => "c3RyaW5n",
        _ => return None,
    })
}

/// `base` cut or padded with `x` to fit the length bounds.
fn sized(base: &str, min: usize, max: Option<usize>) -> String {
    let mut s: String = base.chars().take(max.unwrap_or(usize::MAX)).collect();
    while s.chars().count() < min {
        s.push('x');
    }
    s
}

fn integer(schema: &Map<String, Value>) -> Value {
    let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    let lo = schema.get("minimum").and_then(Value::as_f64).map(|m| {
        if exclusive("exclusiveMinimum") {
            m.floor() + 1.0
        } else {
            m.ceil()
        }
    });
    let hi = schema.get("maximum").and_then(Value::as_f64).map(|m| {
        if exclusive("exclusiveMaximum") {
            m.ceil() - 1.0
        } else {
            m.floor()
        }
    });
    let mut v = 0f64;
    if let Some(lo) = lo {
        v = v.max(lo);
    }
    if let Some(hi) = hi {
        v = v.min(hi);
    }
    if let Some(step) = schema
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|s| *s > 0.0)
    {
        let up = (v / step).ceil() * step;
        v = if hi.is_none_or(|hi| up <= hi) {
            up
        } else {
            (v / step).floor() * step
        };
    }
    Value::from(v as i64)
}

fn number(schema: &Map<String, Value>) -> Value {
    let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    let lo = schema.get("minimum").and_then(Value::as_f64);
    let hi = schema.get("maximum").and_then(Value::as_f64);
    let mut v = 0f64;
    if let Some(lo) = lo {
        if v < lo || (v == lo && exclusive("exclusiveMinimum")) {
            v = if exclusive("exclusiveMinimum") {
                lo + 1.0
            } else {
                lo
            };
        }
    }
    if let Some(hi) = hi {
        if v > hi || (v == hi && exclusive("exclusiveMaximum")) {
            v = if exclusive("exclusiveMaximum") {
                hi - 1.0
            } else {
                hi
            };
            if let Some(lo) = lo.filter(|lo| v <= *lo) {
                v = (lo + hi) / 2.0;
            }
        }
    }
    if let Some(step) = schema
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|s| *s > 0.0)
    {
        v = (v / step).ceil() * step;
    }
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::from(0))
}

/// A string that matches `pattern` (an ECMA-262 regex, as JSON Schema has them) with
/// at least `min` characters if the pattern can grow that far, made deterministically
/// from its syntax tree: the first alternative, the fewest repetitions, and of each
/// character class a letter or digit where it has one.
pub fn pattern_string(pattern: &str, min: usize, max: Option<usize>) -> Option<String> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut shortest = String::new();
    write(&hir, &mut 0, &mut shortest);
    let length = shortest.chars().count();
    let text = if length >= min {
        shortest
    } else {
        let mut grown = String::new();
        write(&hir, &mut (min - length), &mut grown);
        grown
    };
    (max.is_none_or(|max| text.chars().count() <= max)).then_some(text)
}

/// Writes the shortest match of `hir`, repeating beyond the minimum while `extra`
/// characters are still wanted.
fn write(hir: &regex_syntax::hir::Hir, extra: &mut usize, out: &mut String) {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(literal) => out.push_str(&String::from_utf8_lossy(&literal.0)),
        HirKind::Class(Class::Unicode(class)) => {
            let has = |c: char| {
                class
                    .ranges()
                    .iter()
                    .any(|r| r.start() <= c && c <= r.end())
            };
            let preferred = ('a'..='z')
                .chain('A'..='Z')
                .chain('0'..='9')
                .chain('!'..='~')
                .chain([' '])
                .find(|c| has(*c));
            if let Some(c) = preferred.or_else(|| class.ranges().first().map(|r| r.start())) {
                out.push(c);
            }
        }
        HirKind::Class(Class::Bytes(class)) => {
            let has = |b: u8| {
                class
                    .ranges()
                    .iter()
                    .any(|r| r.start() <= b && b <= r.end())
            };
            let preferred = (b'a'..=b'z')
                .chain(b'A'..=b'Z')
                .chain(b'0'..=b'9')
                .chain(b'!'..=b'~')
                .find(|b| has(*b));
            if let Some(b) = preferred.or_else(|| class.ranges().first().map(|r| r.start())) {
                out.push(char::from(b));
            }
        }
        HirKind::Repetition(repetition) => {
            for _ in 0..repetition.min {
                write(&repetition.sub, extra, out);
            }
            let mut count = repetition.min;
            while *extra > 0 && repetition.max.is_none_or(|max| count < max) {
                let mut once = String::new();
                write(&repetition.sub, &mut 0, &mut once);
                let added = once.chars().count();
                if added == 0 {
                    break;
                }
                // May overshoot: longer than wanted beats shorter than allowed.
                out.push_str(&once);
                *extra = extra.saturating_sub(added);
                count += 1;
            }
        }
        HirKind::Capture(capture) => write(&capture.sub, extra, out),
        HirKind::Concat(parts) => parts.iter().for_each(|h| write(h, extra, out)),
        HirKind::Alternation(branches) => {
            if let Some(first) = branches.first() {
                write(first, extra, out);
            }
        }
    }
}
