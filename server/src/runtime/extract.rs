//! Validation from the spec before a handler runs. The YAML's constraints (lengths,
//! patterns, formats, bounds, unknown fields) are checked against the raw request with
//! `jsonschema`, all violations at once, and only then deserialised into the generated
//! types. Each extractor wraps a dropshot extractor's metadata, so the served document
//! still describes the request exactly as dropshot would.

use super::problem::{FieldError, Problem};
use async_trait::async_trait;
use dropshot::{
    ApiEndpointBodyContentType, ExclusiveExtractor, ExtractorMetadata, Query, RequestContext,
    ServerContext, SharedExtractor, TypedBody,
};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Location {
    Path,
    Query,
    Header,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    String,
    Integer,
    Number,
    Boolean,
}

struct ParamCheck {
    name: String,
    location: Location,
    required: bool,
    kind: Kind,
    validator: jsonschema::Validator,
}

/// The compiled checks of one operation.
#[derive(Default)]
pub struct OperationChecks {
    body: Option<jsonschema::Validator>,
    params: Vec<ParamCheck>,
}

type Registry = RwLock<HashMap<String, Arc<OperationChecks>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn checks_for(operation_id: &str) -> Option<Arc<OperationChecks>> {
    registry()
        .read()
        .expect("registry lock")
        .get(operation_id)
        .cloned()
}

/// Compiles a validator for `schema`, resolving `#/components/...` against `spec`.
fn compile(spec: &Value, schema: &Value) -> anyhow::Result<jsonschema::Validator> {
    // OpenAPI 3.0 schemas are a draft-4 dialect; carrying the components along lets
    // local `$ref`s resolve inside the one document.
    let mut root = Map::new();
    root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
    root.insert(
        "components".into(),
        spec.get("components").cloned().unwrap_or(Value::Null),
    );
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        // Formats OpenAPI uses that draft 4 does not define.
        .with_format("uuid", |s: &str| uuid::Uuid::try_parse(s).is_ok())
        .build(&Value::Object(root))
        .map_err(|e| anyhow::anyhow!("compiling schema: {e}"))
}

fn deref<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(p) => spec.pointer(p).unwrap_or(v),
        None => v,
    }
}

/// Compiles the checks of every operation in `spec` (the bundled OpenAPI document) and
/// registers them by operationId. Idempotent, so many servers may share a process.
pub fn register_spec(spec: &Value) -> anyhow::Result<()> {
    let paths = spec
        .get("paths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (_, item) in paths {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            if checks_for(id).is_some() {
                continue;
            }
            let mut checks = OperationChecks::default();
            if let Some(schema) = op
                .get("requestBody")
                .map(|b| deref(spec, b))
                .and_then(|b| b.pointer("/content/application~1json/schema"))
            {
                checks.body = Some(compile(spec, schema)?);
            }
            let own: Vec<Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for p in shared.iter().chain(own.iter()) {
                let p = deref(spec, p);
                let location = match p.get("in").and_then(Value::as_str) {
                    Some("path") => Location::Path,
                    Some("query") => Location::Query,
                    Some("header") => Location::Header,
                    _ => continue,
                };
                let schema = p.get("schema").cloned().unwrap_or(Value::Bool(true));
                let kind = match deref(spec, &schema).get("type").and_then(Value::as_str) {
                    Some("integer") => Kind::Integer,
                    Some("number") => Kind::Number,
                    Some("boolean") => Kind::Boolean,
                    _ => Kind::String,
                };
                checks.params.push(ParamCheck {
                    name: p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    location,
                    required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                    kind,
                    validator: compile(spec, &schema)?,
                });
            }
            registry()
                .write()
                .expect("registry lock")
                .insert(id.to_string(), Arc::new(checks));
        }
    }
    Ok(())
}

/// Every violation of `validator` by `instance`, with pointers prefixed by `prefix`.
/// Messages never repeat a string value back (it may be a password).
fn violations(
    validator: &jsonschema::Validator,
    instance: &Value,
    prefix: &str,
    out: &mut Vec<FieldError>,
) {
    for error in validator.iter_errors(instance) {
        let mut pointer = format!("{prefix}{}", error.instance_path().as_str());
        let message = match error.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                pointer = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
                "is required".to_string()
            }
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError {
                        pointer: format!(
                            "{pointer}/{}",
                            name.replace('~', "~0").replace('/', "~1")
                        ),
                        message: "is not a known field".into(),
                    });
                }
                continue;
            }
            _ => {
                let text = error.to_string();
                match error.instance().as_ref() {
                    Value::String(_) | Value::Object(_) | Value::Array(_) => {
                        let shown =
                            serde_json::to_string(error.instance().as_ref()).unwrap_or_default();
                        text.replace(&shown, "value")
                    }
                    _ => text,
                }
            }
        };
        out.push(FieldError { pointer, message });
    }
}

fn fail(rqctx_request_id: &str, problem: Problem) -> dropshot::HttpError {
    problem.request(rqctx_request_id).into_http_error()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads, checks and validates a JSON body. `Ok(None)`: no body, and `optional` allows that.
async fn json_body<Context: ServerContext, T: DeserializeOwned>(
    rqctx: &RequestContext<Context>,
    request: hyper::Request<dropshot::Body>,
    optional: bool,
) -> Result<Option<T>, dropshot::HttpError> {
    let rid = rqctx.request_id.as_str();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let limit = rqctx.request_body_max_bytes();
    let body = http_body_util::Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                fail(
                    rid,
                    Problem::new(
                        413,
                        format!("The request body is larger than {limit} bytes."),
                    ),
                )
            } else {
                fail(
                    rid,
                    Problem::bad_request("The request body could not be read."),
                )
            }
        })?
        .to_bytes();
    if body.is_empty() && optional {
        return Ok(None);
    }
    match content_type.as_deref() {
        Some(ct) if is_json(ct) => {}
        Some(ct) => {
            return Err(fail(
                rid,
                Problem::new(
                    415,
                    format!("Content-Type {ct:?} is not supported; send application/json."),
                ),
            ))
        }
        None if body.is_empty() => {}
        None => {
            return Err(fail(
                rid,
                Problem::new(415, "Content-Type is missing; send application/json."),
            ))
        }
    }
    if body.is_empty() {
        return Err(fail(
            rid,
            Problem::bad_request("A JSON request body is required."),
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        fail(
            rid,
            Problem::bad_request(format!("The request body is not valid UTF-8 ({e}).")),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(
            rid,
            Problem::bad_request(format!("The request body is not valid JSON: {e}.")),
        )
    })?;
    let mut errors = Vec::new();
    if let Some(checks) = checks_for(&rqctx.endpoint.operation_id) {
        if let Some(validator) = &checks.body {
            violations(validator, &value, "", &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(fail(rid, Problem::validation(errors)));
    }
    // The schema accepted it; serde can still refuse what JSON Schema cannot say.
    serde_json::from_value(value).map(Some).map_err(|e| {
        fail(
            rid,
            Problem::validation(vec![FieldError {
                pointer: String::new(),
                message: e.to_string(),
            }]),
        )
    })
}

/// A JSON request body, validated against the operation's schema before deserialising.
#[derive(Debug)]
pub struct ValidatedBody<T>(T);

impl<T> ValidatedBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T> ExclusiveExtractor for ValidatedBody<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
        request: hyper::Request<dropshot::Body>,
    ) -> Result<Self, dropshot::HttpError> {
        let body = json_body(rqctx, request, false).await?;
        Ok(ValidatedBody(body.expect("a required body is present")))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        TypedBody::<T>::metadata(content_type)
    }
}

/// A JSON request body the operation does not require (`requestBody.required: false`):
/// `None` when the request has no body; validated like `ValidatedBody` when it has one.
#[derive(Debug)]
pub struct OptionalBody<T>(Option<T>);

impl<T> OptionalBody<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

#[async_trait]
impl<T> ExclusiveExtractor for OptionalBody<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
        request: hyper::Request<dropshot::Body>,
    ) -> Result<Self, dropshot::HttpError> {
        json_body(rqctx, request, true).await.map(OptionalBody)
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        let mut metadata = TypedBody::<T>::metadata(content_type);
        for parameter in &mut metadata.parameters {
            parameter.required = false;
        }
        metadata
    }
}

/// Coerces the text of a parameter to the JSON type its schema asks for.
fn coerce(kind: Kind, text: &str) -> Result<Value, &'static str> {
    match kind {
        Kind::String => Ok(Value::String(text.to_string())),
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .map_err(|_| "must be an integer"),
        Kind::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or("must be a number"),
        Kind::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("must be true or false"),
        },
    }
}

/// Validates raw parameters of one location and deserialises them into `T`.
fn parameters<T: DeserializeOwned>(
    operation_id: &str,
    location: Location,
    raw: Vec<(String, String)>,
) -> Result<T, Problem> {
    let prefix = match location {
        Location::Path => "/path",
        Location::Query => "/query",
        Location::Header => "/header",
    };
    let mut errors = Vec::new();
    let mut object = Map::new();
    let checks = checks_for(operation_id);
    let declared: Vec<&ParamCheck> = checks
        .as_ref()
        .map(|c| c.params.iter().filter(|p| p.location == location).collect())
        .unwrap_or_default();
    for (name, text) in &raw {
        let pointer = format!("{prefix}/{name}");
        let Some(check) = declared.iter().find(|p| &p.name == name) else {
            errors.push(FieldError {
                pointer,
                message: "is not a known parameter".into(),
            });
            continue;
        };
        if object.contains_key(name) {
            errors.push(FieldError {
                pointer,
                message: "is given more than once".into(),
            });
            continue;
        }
        match coerce(check.kind, text) {
            Ok(value) => {
                violations(&check.validator, &value, &pointer, &mut errors);
                object.insert(name.clone(), value);
            }
            Err(message) => errors.push(FieldError {
                pointer,
                message: message.into(),
            }),
        }
    }
    for check in &declared {
        if check.required && !raw.iter().any(|(n, _)| n == &check.name) {
            errors.push(FieldError {
                pointer: format!("{prefix}/{}", check.name),
                message: "is required".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    serde_json::from_value(Value::Object(object)).map_err(|e| {
        Problem::validation(vec![FieldError {
            pointer: prefix.into(),
            message: e.to_string(),
        }])
    })
}

/// Query parameters, validated against the operation's parameter schemas.
#[derive(Debug)]
pub struct ValidatedQuery<T>(T);

impl<T> ValidatedQuery<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T> SharedExtractor for ValidatedQuery<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
    ) -> Result<Self, dropshot::HttpError> {
        let rid = rqctx.request_id.as_str();
        let raw: Vec<(String, String)> =
            serde_urlencoded::from_str(rqctx.request.uri().query().unwrap_or("")).map_err(|e| {
                fail(
                    rid,
                    Problem::bad_request(format!("The query string cannot be parsed: {e}.")),
                )
            })?;
        parameters(&rqctx.endpoint.operation_id, Location::Query, raw)
            .map(ValidatedQuery)
            .map_err(|p| fail(rid, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <Query<T> as SharedExtractor>::metadata(content_type)
    }
}

/// Path parameters, validated against the operation's parameter schemas.
#[derive(Debug)]
pub struct ValidatedPath<T>(T);

impl<T> ValidatedPath<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T> SharedExtractor for ValidatedPath<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
    ) -> Result<Self, dropshot::HttpError> {
        let raw: std::collections::BTreeMap<String, String> = <dropshot::Path<
            std::collections::BTreeMap<String, String>,
        > as SharedExtractor>::from_request(
            rqctx
        )
        .await?
        .into_inner();
        let raw = raw.into_iter().collect();
        parameters(&rqctx.endpoint.operation_id, Location::Path, raw)
            .map(ValidatedPath)
            .map_err(|p| fail(&rqctx.request_id, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <dropshot::Path<T> as SharedExtractor>::metadata(content_type)
    }
}

/// Header parameters, validated against the operation's parameter schemas. Only the
/// headers the operation declares are looked at (matched ignoring case); a header sent
/// on several lines counts as one comma-separated value, as HTTP defines.
#[derive(Debug)]
pub struct ValidatedHeaders<T>(T);

impl<T> ValidatedHeaders<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T> SharedExtractor for ValidatedHeaders<T>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
{
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
    ) -> Result<Self, dropshot::HttpError> {
        let operation_id = &rqctx.endpoint.operation_id;
        let headers = rqctx.request.headers();
        let mut raw = Vec::new();
        let mut errors = Vec::new();
        let checks = checks_for(operation_id);
        for check in checks
            .iter()
            .flat_map(|c| c.params.iter())
            .filter(|p| p.location == Location::Header)
        {
            let mut values = Vec::new();
            for value in headers.get_all(check.name.as_str()) {
                match value.to_str() {
                    Ok(text) => values.push(text.trim()),
                    Err(_) => errors.push(FieldError {
                        pointer: format!("/header/{}", check.name),
                        message: "is not visible ASCII text".into(),
                    }),
                }
            }
            if !values.is_empty() {
                raw.push((check.name.clone(), values.join(", ")));
            }
        }
        if !errors.is_empty() {
            return Err(fail(&rqctx.request_id, Problem::validation(errors)));
        }
        parameters(operation_id, Location::Header, raw)
            .map(ValidatedHeaders)
            .map_err(|p| fail(&rqctx.request_id, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <dropshot::Header<T> as SharedExtractor>::metadata(content_type)
    }
}

/// Validates `value` against the request body schema of `operation_id` (registered by
/// `register_spec`), for input that arrives some other way than HTTP (e.g. the CLI).
pub fn validate_body(operation_id: &str, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(validator) = checks_for(operation_id)
        .as_ref()
        .and_then(|c| c.body.as_ref())
    {
        violations(validator, value, "", &mut errors);
    }
    errors
}
