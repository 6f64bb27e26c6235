//! The infrastructure operations every service serves (`ping`, `healthz`, `readyz`,
//! `version`; provided methods of each generated trait call these) and the unpublished
//! endpoints that serve the spec itself.

use super::{Problem, ServiceContext, SpecContext};
use dropshot::{ApiEndpoint, Body, HttpError, HttpResponseOk, RequestContext};
use http::Response;
use serde::de::DeserializeOwned;

/// A response type the generated code can return.
pub trait Payload:
    DeserializeOwned + serde::Serialize + schemars::JsonSchema + Send + Sync + 'static
{
}
impl<T: DeserializeOwned + serde::Serialize + schemars::JsonSchema + Send + Sync + 'static> Payload
    for T
{
}
use serde_json::json;

// Every service's generated types module has its own `Ping`, `Health` and `Version`
// (from common.yaml), so these are generic over the service's type.
fn typed<T: Payload>(value: serde_json::Value) -> Result<HttpResponseOk<T>, Problem> {
    serde_json::from_value(value)
        .map(HttpResponseOk)
        .map_err(mismatch)
}

/// `typed` for a constant answer of string fields, deserialized straight from them:
/// `ping` is the cheapest request there is, so building a JSON tree for it, and then
/// parsing JSON text (~1,100 instructions of ~31,000), showed in its cost.
fn constant<T: Payload>(
    fields: &'static [(&'static str, &'static str)],
) -> Result<HttpResponseOk<T>, Problem> {
    use serde::de::value::{Error, MapDeserializer};
    T::deserialize(MapDeserializer::<_, Error>::new(fields.iter().copied()))
        .map(HttpResponseOk)
        .map_err(mismatch)
}

fn mismatch<E: std::fmt::Display>(e: E) -> Problem {
    Problem::new(
        500,
        format!("infrastructure response does not match common.yaml: {e}"),
    )
}

pub async fn ping<C: ServiceContext, T: Payload>(
    _rqctx: RequestContext<C>,
) -> Result<HttpResponseOk<T>, Problem> {
    constant(&[("status", "success"), ("message", "pong!")])
}

pub async fn healthz<C: ServiceContext, T: Payload>(
    _rqctx: RequestContext<C>,
) -> Result<HttpResponseOk<T>, Problem> {
    constant(&[("status", "ok")])
}

pub async fn readyz<C: ServiceContext, T: Payload>(
    rqctx: RequestContext<C>,
) -> Result<HttpResponseOk<T>, Problem> {
    let store = rqctx.context().store();
    match store.ready().await {
        Ok(()) => match store.sql().filter(|db| db.outbox) {
            Some(db) => match super::outbox::backlog(db).await {
                Ok(backlog) => typed(json!({"status": "ok", "outbox": backlog})),
                Err(e) => Err(Problem::internal(&rqctx.log, &format!("{e:#}"))),
            },
            None => typed(json!({"status": "ok"})),
        },
        Err(e) => {
            // The reason (a database error, its host and user) is for operators: it goes
            // to the log, under this request's id, and anyone may call readyz.
            slog::warn!(rqctx.log, "not ready"; "reason" => %format!("{e:#}"));
            Err(Problem::unavailable(format!(
                "Not ready; the log has the reason under request id {}.",
                rqctx.request_id
            ))
            .request(&rqctx.request_id)
            .header(http::header::RETRY_AFTER, "5"))
        }
    }
}

pub async fn version<C: ServiceContext, T: Payload>(
    rqctx: RequestContext<C>,
) -> Result<HttpResponseOk<T>, Problem> {
    let spec = rqctx.context().spec();
    typed(json!({
        "service": spec.service,
        "version": env!("CARGO_PKG_VERSION"),
        "spec_version": spec.version,
    }))
}

async fn openapi_json<C: SpecContext>(
    rqctx: RequestContext<C>,
) -> Result<Response<Body>, HttpError> {
    document(&rqctx.context().served_spec().json, "application/json")
}

async fn openapi_yaml<C: SpecContext>(
    rqctx: RequestContext<C>,
) -> Result<Response<Body>, HttpError> {
    document(rqctx.context().served_spec().yaml, "application/yaml")
}

fn document(text: &str, content_type: &str) -> Result<Response<Body>, HttpError> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from(text.to_string()))
        .map_err(|e| HttpError::for_internal_error(e.to_string()))
}

/// The unpublished endpoints that serve the spec itself.
pub fn endpoints<C: SpecContext>() -> Vec<ApiEndpoint<C>> {
    vec![
        unpublished_get!("openapi_json", openapi_json::<C>, "/openapi.json"),
        unpublished_get!("openapi_yaml", openapi_yaml::<C>, "/openapi.yaml"),
    ]
}
