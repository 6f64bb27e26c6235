//! `/docs`: an interactive API reference (Swagger UI) for the service's own spec. The
//! assets are vendored (`server/assets/swagger-ui`) and embedded, so the page works with
//! no network access. Every service also serves the gateway's combined document and its
//! page under `/gateway/`, which the gateway (deploy/nginx.conf) shows at its `/docs`.

use super::SpecContext;
use dropshot::{ApiEndpoint, Body, HttpError, Path, RequestContext};
use http::Response;
use schemars::JsonSchema;
use serde::Deserialize;

const SWAGGER_UI_VERSION: &str = "5.35.0";
const BUNDLE_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Every service's operations in one document (`cargo xtask gen` makes it).
const GATEWAY_YAML: &str = include_str!("../../../openapi/bundled/gateway.yaml");

fn page(title: &str, spec_url: &str) -> String {
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css?v={SWAGGER_UI_VERSION}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{spec_url}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      tryItOutEnabled: true,
      persistAuthorization: true,
      displayRequestDuration: true
    }});
  </script>
</body>
</html>
"##
    )
}

fn respond(content_type: &str, cache: &str, body: Body) -> Result<Response<Body>, HttpError> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, cache)
        .body(body)
        .map_err(|e| HttpError::for_internal_error(e.to_string()))
}

async fn docs_page<C: SpecContext>(rqctx: RequestContext<C>) -> Result<Response<Body>, HttpError> {
    let spec = rqctx.context().served_spec();
    let title = spec
        .value
        .pointer("/info/title")
        .and_then(|t| t.as_str())
        .unwrap_or(spec.service);
    respond(
        "text/html; charset=utf-8",
        "no-cache",
        Body::from(page(title, "/openapi.json")),
    )
}

async fn gateway_page<C: SpecContext>(
    _rqctx: RequestContext<C>,
) -> Result<Response<Body>, HttpError> {
    respond(
        "text/html; charset=utf-8",
        "no-cache",
        Body::from(page("Taproom (all services)", "/gateway/openapi.json")),
    )
}

async fn gateway_openapi<C: SpecContext>(
    _rqctx: RequestContext<C>,
) -> Result<Response<Body>, HttpError> {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let json = JSON.get_or_init(|| {
        serde_yaml::from_str::<serde_json::Value>(GATEWAY_YAML)
            .map(|v| v.to_string())
            .unwrap_or_default()
    });
    respond("application/json", "no-cache", Body::from(json.clone()))
}

#[derive(Deserialize, JsonSchema)]
struct Asset {
    asset: String,
}

async fn docs_asset<C: SpecContext>(
    _rqctx: RequestContext<C>,
    path: Path<Asset>,
) -> Result<Response<Body>, HttpError> {
    // The version is in the page's asset URLs, so browsers may keep these for long.
    let cache = "public, max-age=604800, immutable";
    match path.into_inner().asset.as_str() {
        "swagger-ui-bundle.js" => respond(
            "text/javascript; charset=utf-8",
            cache,
            Body::from(bytes::Bytes::from_static(BUNDLE_JS)),
        ),
        "swagger-ui.css" => respond(
            "text/css; charset=utf-8",
            cache,
            Body::from(bytes::Bytes::from_static(CSS)),
        ),
        _ => Err(HttpError::for_not_found(None, "no such docs asset".into())),
    }
}

/// The unpublished `/docs` endpoints.
pub fn endpoints<C: SpecContext>() -> Vec<ApiEndpoint<C>> {
    vec![
        unpublished_get!("docs", docs_page::<C>, "/docs"),
        unpublished_get!("docs_asset", docs_asset::<C>, "/docs/{asset}"),
        unpublished_get!("gateway_docs", gateway_page::<C>, "/gateway/docs"),
        unpublished_get!(
            "gateway_openapi",
            gateway_openapi::<C>,
            "/gateway/openapi.json"
        ),
    ]
}
