//! The built-in gateway of `server all`: one origin (port 5000) in front of every service,
//! with the same routes as `deploy/nginx.conf`, so that the README's one command gives the
//! whole system behind one address with one API reference at `/docs`, and the web client
//! at `/` (`crate::webapp`). In production, put
//! nginx (deploy/nginx.conf) or an Ingress in front instead: they add failover between
//! instances, which this gateway does not do.

use crate::runtime::config::Config;
use crate::runtime::Problem;
use dropshot::{ApiDescription, ApiEndpoint, Body, HttpServer, Path, RequestContext, UntypedBody};
use http::{header, HeaderName, Method, Response};
use schemars::JsonSchema;
use serde::Deserialize;

/// Which service serves which path prefix (the longest match wins): each service's public
/// operations, from its spec (`ServiceDef::public_prefixes`), and the documentation pages,
/// which every service serves (the first one's are used). Events between services
/// (`x-internal`) are not routed.
fn routes() -> &'static [(String, &'static str)] {
    static ROUTES: std::sync::OnceLock<Vec<(String, &'static str)>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut routes = Vec::new();
        for def in crate::SERVICES {
            let prefixes = def
                .public_prefixes()
                .expect("the embedded specs were parsed at start-up");
            routes.extend(prefixes.into_iter().map(|p| (p, def.name)));
        }
        let docs = crate::SERVICES[0].name;
        routes.push(("/docs/".into(), docs));
        routes.push(("/gateway/".into(), docs));
        routes
    })
}

/// Paths the gateway rewrites: the combined document's page and the document itself.
const REWRITES: &[(&str, &str)] = &[
    ("/docs", "/gateway/docs"),
    ("/openapi.json", "/gateway/openapi.json"),
];

/// The service and upstream path for a request path, if any service serves it.
pub fn route(path: &str) -> Option<(&'static str, String)> {
    if let Some((_, to)) = REWRITES.iter().find(|(from, _)| *from == path) {
        return Some((crate::SERVICES[0].name, to.to_string()));
    }
    routes()
        .iter()
        .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, service)| (*service, path.to_string()))
}

/// Whether a path reads differently once normalised: a dot segment (`.`, `..`, or any
/// percent-encoded spelling such as `%2e%2e`, `%2E.`, `.%2e`), an encoded slash or
/// backslash (`%2f`, `%5c`), or a backslash. The gateway routes on the path as sent, but
/// the client that forwards it resolves dot segments (WHATWG URL rules), so
/// `/v1/promotions/%2e%2e/events` would be routed as promotions' and reach `/v1/events`,
/// an operation between services that the gateway does not route.
pub fn ambiguous_path(path: &str) -> bool {
    path.contains('\\')
        || path.split('/').any(|segment| {
            let decoded = percent_decode(segment);
            decoded == b"." || decoded == b".." || decoded.iter().any(|b| matches!(b, b'/' | b'\\'))
        })
}

/// `%XX` sequences decoded once (anything else, malformed escapes included, as is).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub struct Gateway {
    /// Base URL of each service.
    upstreams: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

#[derive(Deserialize, JsonSchema)]
struct Rest {
    #[allow(dead_code)]
    path: Vec<String>,
}

// Names parsed once here: a `&str` name is parsed again on every look-up or insert.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REQUEST_ID: HeaderName = HeaderName::from_static(dropshot::HEADER_REQUEST_ID);

/// Headers that belong to one connection, not to the request or response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// `X-Forwarded-For` for the upstream: what the client sent, with the address this
/// gateway saw appended (as nginx's `$proxy_add_x_forwarded_for`). The services believe
/// the header from the gateway (a trusted proxy) only up to its right-most untrusted
/// hop, which is this one: a client cannot choose its address by sending the header.
fn forwarded_for(rqctx: &RequestContext<Gateway>) -> String {
    let peer = rqctx.request.remote_addr().ip().to_string();
    let sent: Vec<&str> = rqctx
        .request
        .headers()
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if sent.is_empty() {
        peer
    } else {
        format!("{}, {peer}", sent.join(", "))
    }
}

async fn forward(
    rqctx: RequestContext<Gateway>,
    _path: Path<Rest>,
    body: UntypedBody,
) -> Result<Response<Body>, Problem> {
    let rid = rqctx.request_id.clone();
    let uri = rqctx.request.uri().clone();
    if ambiguous_path(uri.path()) {
        return Err(Problem::bad_request(
            "The path has a dot segment or an encoded slash (`..`, `%2e`, `%2f`, `%5c`); send the path it stands for.",
        )
        .request(&rid));
    }
    let Some((service, path)) = route(uri.path()) else {
        // What no service serves may be the web app's page or one of its files.
        return match rqctx.request.method() {
            &Method::GET => crate::webapp::serve(uri.path()),
            _ => None,
        }
        .ok_or_else(|| Problem::not_found("No service serves this path.").request(&rid));
    };
    let gateway = rqctx.context();
    let Some((_, base)) = gateway.upstreams.iter().find(|(s, _)| *s == service) else {
        // `server all` runs without a service this machine cannot run (it said why).
        return Err(Problem::unavailable(format!(
            "The {service} service is not running here; its start-up message says why."
        ))
        .request(&rid));
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut request = gateway.http.request(
        rqctx.request.method().clone(),
        format!("{base}{path}{query}"),
    );
    for (name, value) in rqctx.request.headers() {
        if !hop_by_hop(name) && name != X_REQUEST_ID && name != X_FORWARDED_FOR {
            request = request.header(name, value);
        }
    }
    let answer = request
        .header(X_REQUEST_ID, &rid)
        .header(X_FORWARDED_FOR, forwarded_for(&rqctx))
        .body(body.as_bytes().to_vec())
        .send()
        .await;
    let unavailable = |e: &dyn std::fmt::Display| {
        slog::warn!(rqctx.log, "gateway: no answer"; "service" => service, "error" => %e);
        Problem::unavailable(format!(
            "The {service} service did not answer; retry shortly."
        ))
        .request(&rid)
        .header(header::RETRY_AFTER, "5")
    };
    let answer = answer.map_err(|e| unavailable(&e))?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(|e| unavailable(&e))?;
    response
        .body(Body::from(bytes))
        .map_err(|e| Problem::internal(&rqctx.log, &e))
}

/// Starts the gateway on GATEWAY_PORT in front of the given service base URLs.
pub fn start(
    config: &Config,
    upstreams: Vec<(&'static str, String)>,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<Gateway>> {
    let mut api = ApiDescription::new();
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let endpoint = ApiEndpoint::new(
            format!("gateway_{}", method.as_str().to_lowercase()),
            forward,
            method,
            "application/json",
            "/{path:.*}",
            dropshot::ApiEndpointVersions::All,
        )
        .visible(false);
        api.register(endpoint)
            .map_err(|e| anyhow::anyhow!("gateway: {e}"))?;
    }
    let timeout = std::time::Duration::from_secs(30);
    let gateway = Gateway {
        upstreams,
        http: reqwest::Client::builder()
            .connect_timeout(config.service_timeout())
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
    };
    let bind = std::net::SocketAddr::new(config.bind_address, config.gateway_port);
    crate::runtime::server::listen(api, gateway, config, log, "gateway", bind, &[])
}

#[cfg(test)]
mod tests {
    use super::ambiguous_path;

    #[test]
    fn dot_segments_and_encoded_slashes_in_any_spelling_are_ambiguous() {
        for path in [
            "/v1/promotions/../events",
            "/v1/promotions/./x",
            "/v1/promotions/%2e%2e/events",
            "/v1/promotions/%2E%2E/events",
            "/v1/promotions/%2E./events",
            "/v1/promotions/.%2e/events",
            "/v1/promotions/%2e",
            "/v1/promotions%2f..%2fevents",
            "/v1/promotions%2F%2E%2E%2Fevents",
            "/v1/promotions/..%5cevents",
            "/v1/promotions/..\\events",
        ] {
            assert!(ambiguous_path(path), "{path}");
        }
        for path in [
            "/v1/beers",
            "/v1/beers/0193b4a2-5c1e-7d3f-8a2b-4c5d6e7f8091",
            "/v1/promotions/SUMMER.25/eligibility",
            "/v1/promotions/...",
            "/v1/promotions/%252e%252e/events",
            "/docs/swagger-ui.css",
        ] {
            assert!(!ambiguous_path(path), "{path}");
        }
    }
}
