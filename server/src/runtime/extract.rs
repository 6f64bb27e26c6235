//! Validation from the spec before a handler runs. The YAML's constraints (lengths,
//! patterns, formats, bounds, unknown fields) are checked against the raw request
//! (`runtime::schema`), all violations at once, and only then deserialised into the generated
//! types. Each extractor wraps a dropshot extractor's metadata, so the served document
//! still describes the request exactly as dropshot would.
//!
//! The compiled checks belong to each service's `Spec` (`Validators`), never to the
//! process: two services of one process with the same operationId each validate against
//! their own YAML. An extractor is typed with its service's context `C` (the generated
//! `api.rs` spells the aliases), and an operation without checks is refused, not served
//! unvalidated.

use super::problem::{FieldError, Problem};
use super::schema::{compile, Validator};
use super::ServiceContext;
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
use std::marker::PhantomData;
use std::sync::Arc;

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
    validator: Validator,
}

/// The compiled checks of one operation.
#[derive(Default)]
pub struct OperationChecks {
    body: Option<Validator>,
    params: Vec<ParamCheck>,
    /// `security: [{eventsAuth: []}]`: the body must carry a valid events signature
    /// (`runtime::events`), checked on its raw bytes before it is even parsed.
    signed: bool,
}

/// Every operation's compiled checks, by operationId: one service's, built from its
/// spec at start-up.
#[derive(Default)]
pub struct Validators {
    operations: HashMap<String, Arc<OperationChecks>>,
}

impl std::fmt::Debug for Validators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validators")
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Validators {
    /// Every operation's id.
    pub fn operation_ids(&self) -> impl Iterator<Item = &str> {
        self.operations.keys().map(String::as_str)
    }

    /// The checks of `operation_id`, if the spec has that operation.
    pub fn get(&self, operation_id: &str) -> Option<&Arc<OperationChecks>> {
        self.operations.get(operation_id)
    }

    /// Validates `value` against the request body schema of `operation_id`, for input
    /// that arrives some other way than HTTP (the CLI, a NATS message). An unknown
    /// operation is a programming error and is reported as a violation, never passed.
    pub fn validate_body(&self, operation_id: &str, value: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match self.get(operation_id) {
            Some(checks) => {
                if let Some(validator) = &checks.body {
                    validator.violations(value, "", &mut errors);
                }
            }
            None => errors.push(FieldError {
                pointer: String::new(),
                message: format!("operation {operation_id} is not in the spec"),
            }),
        }
        errors
    }
}

/// `v`, or what its local `$ref` points to (followed through a reference to a
/// reference, a bounded number of times); `v` itself when the reference resolves to nothing.
pub(crate) fn deref<'a>(spec: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| spec.pointer(p))
        {
            Some(target) => v = target,
            None => break,
        }
    }
    v
}

impl Validators {
    /// Compiles the checks of every operation in `spec` (the bundled OpenAPI document); an
    /// error names the operation whose schema does not compile.
    pub fn compile(spec: &Value) -> anyhow::Result<Validators> {
        let mut operations = HashMap::new();
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
                anyhow::ensure!(
                    !operations.contains_key(id),
                    "operationId {id} is used by more than one operation"
                );
                let mut checks = OperationChecks {
                    signed: op
                        .get("security")
                        .and_then(Value::as_array)
                        .is_some_and(|r| r.iter().any(|req| req.get("eventsAuth").is_some())),
                    ..Default::default()
                };
                if let Some(schema) = op
                    .get("requestBody")
                    .map(|b| deref(spec, b))
                    .and_then(|b| b.pointer("/content/application~1json/schema"))
                {
                    checks.body = Some(
                        compile(spec, schema)
                            .map_err(|e| anyhow::anyhow!("{id}: request body: {e}"))?,
                    );
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
                        validator: compile(spec, &schema)
                            .map_err(|e| anyhow::anyhow!("{id}: parameter: {e}"))?,
                    });
                }
                operations.insert(id.to_string(), Arc::new(checks));
            }
        }
        Ok(Validators { operations })
    }
}

fn fail(request_id: &str, problem: Problem) -> dropshot::HttpError {
    problem.request(request_id).into_http_error()
}

/// Whether a media type is JSON (`application/json` or `application/*+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The service context of a request, as the concrete type `C` its extractors are typed
/// with. A mismatch is a wiring mistake (an API mounted with another service's context);
/// it is refused with a 500 rather than served unchecked.
pub fn service_context<C: ServiceContext, X: ServerContext>(
    rqctx: &RequestContext<X>,
) -> Result<&C, dropshot::HttpError> {
    (rqctx.context() as &dyn std::any::Any)
        .downcast_ref::<C>()
        .ok_or_else(|| {
            slog::error!(rqctx.log, "extractor typed with another context";
                "expected" => std::any::type_name::<C>(), "actual" => std::any::type_name::<X>());
            fail(
                &rqctx.request_id,
                Problem::new(500, "The server is misconfigured."),
            )
        })
}

/// The compiled checks of the request's operation in its own service's spec. An
/// operation the spec does not describe is never served unvalidated.
fn operation_checks<C: ServiceContext, X: ServerContext>(
    rqctx: &RequestContext<X>,
) -> Result<Arc<OperationChecks>, dropshot::HttpError> {
    let service = service_context::<C, X>(rqctx)?;
    let id = rqctx.endpoint.operation_id.as_str();
    service.spec().validators.get(id).cloned().ok_or_else(|| {
        slog::error!(rqctx.log, "operation has no validator"; "operation_id" => id);
        fail(
            &rqctx.request_id,
            Problem::new(500, "The server is misconfigured."),
        )
    })
}

/// Reads a request body as JSON, within `limit` bytes, refusing other media types.
/// `Ok(None)`: the body is empty and `optional` allows that.
pub async fn read_json(
    request: hyper::Request<dropshot::Body>,
    limit: usize,
    optional: bool,
) -> Result<Option<Value>, Problem> {
    let (parts, body) = request.into_parts();
    read_json_verified(&parts.headers, body, limit, optional, |_| Ok(())).await
}

/// `read_json` of a body whose request's headers are `headers`, with `verify` run on
/// the raw bytes first (a signature over them). An extractor's request has no headers
/// of its own: dropshot moved them into `rqctx.request`.
async fn read_json_verified(
    headers: &http::HeaderMap,
    body: dropshot::Body,
    limit: usize,
    optional: bool,
    verify: impl FnOnce(&[u8]) -> Result<(), Problem>,
) -> Result<Option<Value>, Problem> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Problem::new(
                    413,
                    format!("The request body is larger than {limit} bytes."),
                )
            } else if let Some(late) = e.downcast_ref::<dropshot::BodyReadTimeout>() {
                Problem::new(408, format!("{late}; send it faster."))
            } else {
                Problem::bad_request("The request body could not be read.")
            }
        })?
        .to_bytes();
    verify(&body)?;
    if body.is_empty() && optional {
        return Ok(None);
    }
    match content_type.as_deref() {
        Some(ct) if is_json(ct) => {}
        Some(ct) => {
            return Err(Problem::new(
                415,
                format!("Content-Type {ct:?} is not supported; send application/json."),
            ))
        }
        None if body.is_empty() => {}
        None => {
            return Err(Problem::new(
                415,
                "Content-Type is missing; send application/json.",
            ))
        }
    }
    if body.is_empty() {
        return Err(Problem::bad_request("A JSON request body is required."));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| Problem::bad_request(format!("The request body is not valid UTF-8 ({e}).")))?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Problem::bad_request(format!("The request body is not valid JSON: {e}.")))
}

impl OperationChecks {
    /// Every violation of the operation's request body schema by `value`.
    pub fn body_violations(&self, value: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(validator) = &self.body {
            validator.violations(value, "", &mut errors);
        }
        errors
    }

    /// Validates raw parameters of one location (undeclared ones are violations too)
    /// and returns them as one JSON object, each coerced to its schema's type.
    fn parameters(
        &self,
        location: Location,
        raw: &[(String, String)],
    ) -> Result<Map<String, Value>, Problem> {
        let prefix = location.prefix();
        let mut errors = Vec::new();
        let mut object = Map::new();
        let declared: Vec<&ParamCheck> = self
            .params
            .iter()
            .filter(|p| p.location == location)
            .collect();
        for (name, text) in raw {
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
                    check.validator.violations(&value, &pointer, &mut errors);
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
        Ok(object)
    }

    /// Path parameters, validated.
    pub fn path(&self, raw: &[(String, String)]) -> Result<Map<String, Value>, Problem> {
        self.parameters(Location::Path, raw)
    }

    /// The query string, parsed and validated.
    pub fn query(&self, query: Option<&str>) -> Result<Map<String, Value>, Problem> {
        let raw: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| {
                Problem::bad_request(format!("The query string cannot be parsed: {e}."))
            })?;
        self.parameters(Location::Query, &raw)
    }

    /// The declared header parameters, validated. Only the headers the operation
    /// declares are looked at (matched ignoring case); a header sent on several lines
    /// counts as one comma-separated value, as HTTP defines.
    pub fn headers(&self, headers: &http::HeaderMap) -> Result<Map<String, Value>, Problem> {
        let mut raw = Vec::new();
        let mut errors = Vec::new();
        for check in self
            .params
            .iter()
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
            return Err(Problem::validation(errors));
        }
        self.parameters(Location::Header, &raw)
    }
}

impl Location {
    fn prefix(self) -> &'static str {
        match self {
            Location::Path => "/path",
            Location::Query => "/query",
            Location::Header => "/header",
        }
    }
}

/// Deserialises what the schema accepted; serde can still refuse what JSON Schema cannot
/// say, and that is a validation problem at `pointer` too.
fn decode<T: DeserializeOwned>(value: Value, pointer: &str) -> Result<T, Problem> {
    serde_json::from_value(value).map_err(|e| {
        Problem::validation(vec![FieldError {
            pointer: pointer.into(),
            message: e.to_string(),
        }])
    })
}

/// Reads, checks and validates a JSON body. `Ok(None)`: no body, and `optional` allows that.
async fn json_body<C: ServiceContext, X: ServerContext, T: DeserializeOwned>(
    rqctx: &RequestContext<X>,
    request: hyper::Request<dropshot::Body>,
    optional: bool,
) -> Result<Option<T>, dropshot::HttpError> {
    let checks = operation_checks::<C, X>(rqctx)?;
    let rid = rqctx.request_id.as_str();
    let signature = rqctx
        .request
        .headers()
        .get(super::events::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let secret = service_context::<C, X>(rqctx)?.events_token();
    let verify = |body: &[u8]| {
        if !checks.signed {
            return Ok(());
        }
        // The security extractor has checked that a secret is configured.
        match secret {
            Some(secret) if super::events::verify(secret, body, signature.as_deref()) => Ok(()),
            _ => Err(super::auth::unauthorized(
                rid,
                "sign the body with the services' events token (Taproom-Signature)",
                signature.is_some(),
            )),
        }
    };
    let Some(value) = read_json_verified(
        rqctx.request.headers(),
        request.into_body(),
        rqctx.request_body_max_bytes(),
        optional,
        verify,
    )
    .await
    .map_err(|p| fail(rid, p))?
    else {
        return Ok(None);
    };
    let errors = checks.body_violations(&value);
    if !errors.is_empty() {
        return Err(fail(rid, Problem::validation(errors)));
    }
    decode(value, "").map(Some).map_err(|p| fail(rid, p))
}

/// The extractor wrappers below carry their service's context type only as a marker.
type Marker<C> = PhantomData<fn() -> C>;

/// A JSON request body, validated against the operation's schema before deserialising.
pub struct ValidatedBody<T, C>(T, Marker<C>);

impl<T, C> ValidatedBody<T, C> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T, C> ExclusiveExtractor for ValidatedBody<T, C>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
    C: ServiceContext,
{
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
        request: hyper::Request<dropshot::Body>,
    ) -> Result<Self, dropshot::HttpError> {
        let body = json_body::<C, X, T>(rqctx, request, false).await?;
        Ok(ValidatedBody(
            body.expect("a required body is present"),
            PhantomData,
        ))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        TypedBody::<T>::metadata(content_type)
    }
}

/// A JSON request body the operation does not require (`requestBody.required: false`):
/// `None` when the request has no body; validated like `ValidatedBody` when it has one.
pub struct OptionalBody<T, C>(Option<T>, Marker<C>);

impl<T, C> OptionalBody<T, C> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

#[async_trait]
impl<T, C> ExclusiveExtractor for OptionalBody<T, C>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
    C: ServiceContext,
{
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
        request: hyper::Request<dropshot::Body>,
    ) -> Result<Self, dropshot::HttpError> {
        json_body::<C, X, T>(rqctx, request, true)
            .await
            .map(|body| OptionalBody(body, PhantomData))
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

/// Query parameters, validated against the operation's parameter schemas.
pub struct ValidatedQuery<T, C>(T, Marker<C>);

impl<T, C> ValidatedQuery<T, C> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T, C> SharedExtractor for ValidatedQuery<T, C>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
    C: ServiceContext,
{
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let checks = operation_checks::<C, X>(rqctx)?;
        checks
            .query(rqctx.request.uri().query())
            .and_then(|object| decode(Value::Object(object), "/query"))
            .map(|v| ValidatedQuery(v, PhantomData))
            .map_err(|p| fail(&rqctx.request_id, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <Query<T> as SharedExtractor>::metadata(content_type)
    }
}

/// Path parameters, validated against the operation's parameter schemas.
pub struct ValidatedPath<T, C>(T, Marker<C>);

impl<T, C> ValidatedPath<T, C> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T, C> SharedExtractor for ValidatedPath<T, C>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
    C: ServiceContext,
{
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let checks = operation_checks::<C, X>(rqctx)?;
        let raw: std::collections::BTreeMap<String, String> = <dropshot::Path<
            std::collections::BTreeMap<String, String>,
        > as SharedExtractor>::from_request(
            rqctx
        )
        .await?
        .into_inner();
        let raw: Vec<(String, String)> = raw.into_iter().collect();
        checks
            .path(&raw)
            .and_then(|object| decode(Value::Object(object), "/path"))
            .map(|v| ValidatedPath(v, PhantomData))
            .map_err(|p| fail(&rqctx.request_id, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <dropshot::Path<T> as SharedExtractor>::metadata(content_type)
    }
}

/// Header parameters, validated against the operation's parameter schemas.
pub struct ValidatedHeaders<T, C>(T, Marker<C>);

impl<T, C> ValidatedHeaders<T, C> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[async_trait]
impl<T, C> SharedExtractor for ValidatedHeaders<T, C>
where
    T: JsonSchema + DeserializeOwned + Send + Sync + 'static,
    C: ServiceContext,
{
    async fn from_request<X: ServerContext>(
        rqctx: &RequestContext<X>,
    ) -> Result<Self, dropshot::HttpError> {
        let checks = operation_checks::<C, X>(rqctx)?;
        checks
            .headers(rqctx.request.headers())
            .and_then(|object| decode(Value::Object(object), "/header"))
            .map(|v| ValidatedHeaders(v, PhantomData))
            .map_err(|p| fail(&rqctx.request_id, p))
    }

    fn metadata(content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <dropshot::Header<T> as SharedExtractor>::metadata(content_type)
    }
}
