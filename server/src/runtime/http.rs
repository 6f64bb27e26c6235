//! The last word on every response (dropshot's response hook, a Taproom patch): errors
//! dropshot renders itself (unknown route, wrong method) become problems, every error
//! is sent as `application/problem+json`, and CORS headers are added for allowed origins.

use super::Problem;
use dropshot::{Body, ResponseContext, ResponseHook};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Response headers browsers may read from cross-origin responses.
const EXPOSED: &str = "x-request-id, location, etag, retry-after, www-authenticate";
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str =
    "authorization, content-type, x-request-id, if-match, if-none-match, idempotency-key";

pub struct Hook {
    /// Allowed CORS origins; `*` allows any. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Path templates (split into segments) and the methods each serves, for `Allow`.
    routes: Vec<(Vec<String>, String)>,
}

impl Hook {
    /// `routes`: every (path template, method) the service serves.
    pub fn new(cors_origins: Vec<String>, routes: &[(String, String)]) -> Hook {
        let mut table: Vec<(Vec<String>, String)> = Vec::new();
        for (path, method) in routes {
            let segments: Vec<String> = path.split('/').map(String::from).collect();
            match table.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, methods)) => {
                    methods.push_str(", ");
                    methods.push_str(method);
                }
                None => table.push((segments, method.clone())),
            }
        }
        Hook {
            cors_origins,
            routes: table,
        }
    }

    /// The `Allow` value for a concrete request path, if some route matches it.
    fn allow(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = path.split('/').collect();
        self.routes.iter().find_map(|(template, methods)| {
            let matches = template.len() == parts.len()
                && template
                    .iter()
                    .zip(&parts)
                    .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()));
            matches.then_some(methods.as_str())
        })
    }

    fn allowed_origin<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?;
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
            .then_some(origin)
    }
}

fn problem_response(problem: &Problem) -> Response<Body> {
    let body = serde_json::to_string(problem).unwrap_or_else(|_| "{}".into());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// The request headers the hook reads (CORS and conditional GETs).
const READS: [header::HeaderName; 3] = [
    header::ORIGIN,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    header::IF_NONE_MATCH,
];

impl ResponseHook for Hook {
    fn request_headers(&self) -> Option<&[header::HeaderName]> {
        Some(&READS)
    }

    fn on_response(
        &self,
        cx: &ResponseContext<'_>,
        mut response: Response<Body>,
    ) -> Response<Body> {
        let origin = self
            .allowed_origin(cx.request_headers.get(header::ORIGIN))
            .cloned();
        let preflight = cx.method == Method::OPTIONS
            && cx
                .request_headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

        if let (Some(origin), true) = (&origin, preflight) {
            // No OPTIONS routes exist, so the router answered 405 (or 404). A preflight
            // for an allowed origin gets its answer instead.
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                let mut ok = Response::new(Body::empty());
                *ok.status_mut() = StatusCode::NO_CONTENT;
                let h = ok.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOWED_METHODS),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOWED_HEADERS),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                h.insert(header::VARY, HeaderValue::from_static("origin"));
                return with_request_id(ok, cx.request_id);
            }
        }

        if let Some(error) = cx.error {
            // dropshot's own body is `{request_id, message}`; make it a problem.
            let mut problem =
                Problem::new(error.status_code.as_u16(), error.external_message.clone());
            problem.request_id = cx.request_id.to_string();
            if let Some(headers) = &error.headers {
                let mut rewritten = problem_response(&problem);
                rewritten.headers_mut().extend(headers.as_ref().clone());
                response = rewritten;
            } else {
                response = problem_response(&problem);
            }
        }
        if cx.method == Method::GET && response.status() == StatusCode::OK {
            response = not_modified(cx, response);
        }
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            // RFC 9110: a 405 says which methods the resource supports.
            if let Some(allow) = self
                .allow(cx.uri.path())
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                response.headers_mut().insert(header::ALLOW, allow);
            }
        }
        if response.status().is_client_error() || response.status().is_server_error() {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        }
        if let Some(origin) = origin {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
            h.append(header::VARY, HeaderValue::from_static("origin"));
        }
        with_request_id(response, cx.request_id)
    }
}

/// A GET whose `If-None-Match` matches the response's ETag gets 304 with no body
/// (the client already has this representation), in one place for every operation.
fn not_modified(cx: &ResponseContext<'_>, response: Response<Body>) -> Response<Body> {
    let (Some(tag), Some(wanted)) = (
        response.headers().get(header::ETAG),
        cx.request_headers.get(header::IF_NONE_MATCH),
    ) else {
        return response;
    };
    let (Ok(tag), Ok(wanted)) = (tag.to_str(), wanted.to_str()) else {
        return response;
    };
    if !super::etag::none_match_hits(wanted, tag) {
        return response;
    }
    let mut unchanged = Response::new(Body::empty());
    *unchanged.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
        if let Some(value) = response.headers().get(&name) {
            unchanged.headers_mut().insert(name, value.clone());
        }
    }
    unchanged
}

/// Responses built here replace dropshot's, so they need the request id header again
/// (dropshot's own have it: replacing it cost an allocation and a copy per request).
fn with_request_id(mut response: Response<Body>, request_id: &str) -> Response<Body> {
    // Parsed once here: a `&str` name is parsed again on every look-up.
    const REQUEST_ID: header::HeaderName =
        header::HeaderName::from_static(dropshot::HEADER_REQUEST_ID);
    if response.headers().contains_key(&REQUEST_ID) {
        return response;
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A 201 response with `Location` (a path the service made, so always valid header text).
pub fn created<T: serde::Serialize + schemars::JsonSchema + Send + Sync + 'static>(
    location: String,
    value: T,
) -> dropshot::HttpResponseHeaders<dropshot::HttpResponseCreated<T>> {
    with_location(location, dropshot::HttpResponseCreated(value))
}

/// A 202 Accepted answer with `Location`: where to follow the work's progress.
pub fn accepted<T: serde::Serialize + schemars::JsonSchema + Send + Sync + 'static>(
    location: String,
    value: T,
) -> dropshot::HttpResponseHeaders<dropshot::HttpResponseAccepted<T>> {
    with_location(location, dropshot::HttpResponseAccepted(value))
}

fn with_location<R: dropshot::HttpCodedResponse>(
    location: String,
    response: R,
) -> dropshot::HttpResponseHeaders<R> {
    let mut response = dropshot::HttpResponseHeaders::new_unnamed(response);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
