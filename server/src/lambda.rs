//! `server lambda <service>` (feature `aws`): one service as an AWS Lambda function
//! behind API Gateway (REST API: payload v1; HTTP API: v2) or a function URL (v2).
//!
//! The function starts the very same dropshot service as `server <service>`, on
//! 127.0.0.1 at a free port, and forwards every event to it as an HTTP request, as AWS's
//! own Lambda Web Adapter does: validation, security, problems, request ids, metrics and
//! logs are those of the plain server, with no second path into the handlers (see
//! docs/architecture.md for why not to call dropshot directly). `lambda_http` turns the
//! events into requests and the responses back into the event's reply (multi-value
//! headers for v1, `cookies` for v2, base64 for binary bodies).

use crate::runtime::config::Config;
use crate::runtime::registry::{self, ServiceDef};
use anyhow::Result;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::sync::Arc;

/// Runs `def` under the Lambda runtime API (`AWS_LAMBDA_RUNTIME_API`) until the
/// runtime stops the function.
pub async fn run(def: &'static ServiceDef, mut config: Config, log: &slog::Logger) -> Result<()> {
    config.bind_address = std::net::Ipv4Addr::LOCALHOST.into();
    config.service_mut(def.name).port = 0;
    // The forwarder is the service's only peer; it passes on the event's source address.
    config.trusted_proxies.push("127.0.0.1/32".parse()?);
    let peers = registry::peer_urls(&config, def);
    let running = (def.start)(&config, &peers, log).await?;
    let forwarder = Arc::new(Forwarder {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::builder()
            .no_proxy()
            // Redirects are the caller's to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
    });
    slog::info!(log, "serving Lambda events"; "service" => def.name, "upstream" => &forwarder.base);
    lambda_http::run(lambda_http::service_fn(move |request: Request| {
        let forwarder = forwarder.clone();
        async move { Ok::<_, lambda_http::Error>(forwarder.forward(request).await) }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

struct Forwarder {
    base: String,
    client: reqwest::Client,
}

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "host",
    "content-length",
];

impl Forwarder {
    async fn forward(&self, request: Request) -> Response<Body> {
        match self.try_forward(request).await {
            Ok(response) => response,
            Err(e) => {
                // The service runs in this process: it not answering is a bad gateway.
                let body = serde_json::json!({
                    "type": "about:blank",
                    "title": "Bad Gateway",
                    "status": 502,
                    "detail": format!("The service did not answer: {e}"),
                });
                Response::builder()
                    .status(502)
                    .header("content-type", "application/problem+json")
                    .body(Body::Text(body.to_string()))
                    .expect("a static response")
            }
        }
    }

    async fn try_forward(&self, request: Request) -> Result<Response<Body>> {
        let (stage, source_ip) = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(c)) => {
                (c.stage.clone(), c.identity.source_ip.clone())
            }
            Some(RequestContext::ApiGatewayV2(c)) => (c.stage.clone(), c.http.source_ip.clone()),
            _ => (None, None),
        };
        let invocation = request.lambda_context_ref().map(|c| c.request_id.clone());
        let (parts, body) = request.into_parts();
        let path = without_stage(parts.uri.path(), stage.as_deref());
        let url = match parts.uri.query() {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                headers.append(name, value.clone());
            }
        }
        // The invocation's id is the request id, unless the caller chose one.
        if let Some(id) = invocation {
            if !headers.contains_key("x-request-id") {
                if let Ok(value) = http::HeaderValue::from_str(&id) {
                    headers.insert("x-request-id", value);
                }
            }
        }
        if let Some(ip) = source_ip {
            let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(before) => format!("{before}, {ip}"),
                None => ip,
            };
            headers.insert("x-forwarded-for", http::HeaderValue::from_str(&forwarded)?);
        }
        let body: Vec<u8> = match body {
            Body::Empty => Vec::new(),
            Body::Text(text) => text.into_bytes(),
            Body::Binary(bytes) => bytes,
            _ => Vec::new(),
        };
        let upstream = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let mut response = Response::builder().status(upstream.status());
        for (name, value) in upstream.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                response = response.header(name, value);
            }
        }
        let textual = upstream
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_text);
        let bytes = upstream.bytes().await?.to_vec();
        let body = if bytes.is_empty() {
            Body::Empty
        } else if textual {
            match String::from_utf8(bytes) {
                Ok(text) => Body::Text(text),
                Err(e) => Body::Binary(e.into_bytes()),
            }
        } else {
            // Sent base64-encoded (`isBase64Encoded`), as API Gateway requires.
            Body::Binary(bytes)
        };
        Ok(response.body(body)?)
    }
}

/// The path without the API Gateway stage `lambda_http` keeps in front of it (`/prod/v1/
/// tasks` -> `/v1/tasks`); `$default` (HTTP APIs, function URLs) has none.
fn without_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    match stage {
        Some(stage) if stage != "$default" && !stage.is_empty() => {
            match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
                Some("") => "/",
                Some(rest) if rest.starts_with('/') => rest,
                _ => path,
            }
        }
        _ => path,
    }
}

/// Whether a content type is text, sent as is rather than base64.
fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("json")
        || essence.ends_with("+json")
        || essence.ends_with("yaml")
        || essence.ends_with("xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
}

#[cfg(test)]
mod tests {
    use super::{is_text, without_stage, Forwarder};
    use lambda_http::Body;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-request upstream: answers `response` and hands back the request it read.
    async fn upstream(response: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body its content-length announces.
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |n| n.trim().parse().unwrap());
                    if body.len() >= length {
                        break;
                    }
                }
            }
            conn.write_all(response).await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (base, served)
    }

    #[tokio::test]
    async fn a_rest_api_event_is_forwarded_and_the_reply_keeps_every_header() {
        let (base, served) = upstream(
            b"HTTP/1.1 201 Created\r\ncontent-type: image/png\r\nset-cookie: a=1\r\n\
              set-cookie: b=2\r\ncontent-length: 3\r\nconnection: close\r\n\r\n\x89PN",
        )
        .await;
        let event = serde_json::json!({
            "resource": "/{proxy+}",
            "path": "/v1/tasks",
            "httpMethod": "POST",
            "headers": {"content-type": "application/json", "x-forwarded-for": "203.0.113.1"},
            "multiValueHeaders": {
                "content-type": ["application/json"],
                "x-forwarded-for": ["203.0.113.1"],
                "accept": ["text/plain", "application/json"],
            },
            "queryStringParameters": {"done": "true"},
            "multiValueQueryStringParameters": {"done": ["true"]},
            "requestContext": {
                "stage": "prod",
                "path": "/prod/v1/tasks",
                "httpMethod": "POST",
                "requestId": "r1",
                "accountId": "1",
                "apiId": "a",
                "identity": {"sourceIp": "198.51.100.7"},
            },
            "body": "eyJ0aXRsZSI6IngifQ==",
            "isBase64Encoded": true,
        });
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let forwarder = Forwarder {
            base,
            client: reqwest::Client::new(),
        };
        let response = forwarder.try_forward(request).await.unwrap();
        let seen = served.await.unwrap();
        // The stage is off the path; the query, the decoded body and every header value
        // arrive; the event's source address is the last hop.
        assert!(
            seen.starts_with("POST /v1/tasks?done=true HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(seen.ends_with("{\"title\":\"x\"}"), "{seen}");
        assert!(
            seen.contains("x-forwarded-for: 203.0.113.1, 198.51.100.7\r\n"),
            "{seen}"
        );
        assert!(
            seen.contains("accept: text/plain\r\n")
                && seen.contains("accept: application/json\r\n"),
            "{seen}"
        );
        assert_eq!(response.status(), 201);
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(response.headers().get("connection").is_none());
        assert_eq!(response.body(), &Body::Binary(b"\x89PN".to_vec()));
    }

    #[test]
    fn the_stage_prefix_is_taken_off() {
        assert_eq!(without_stage("/prod/v1/tasks", Some("prod")), "/v1/tasks");
        assert_eq!(without_stage("/prod", Some("prod")), "/");
        assert_eq!(without_stage("/v1/tasks", Some("$default")), "/v1/tasks");
        assert_eq!(without_stage("/v1/tasks", None), "/v1/tasks");
        // Only a whole segment is a stage.
        assert_eq!(
            without_stage("/production/x", Some("prod")),
            "/production/x"
        );
    }

    #[test]
    fn json_and_text_are_text_and_the_rest_is_binary() {
        assert!(is_text("application/problem+json"));
        assert!(is_text("application/json; charset=utf-8"));
        assert!(is_text("text/html"));
        assert!(is_text("application/yaml"));
        assert!(!is_text("image/png"));
        assert!(!is_text("application/octet-stream"));
    }
}
