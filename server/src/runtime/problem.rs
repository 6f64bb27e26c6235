//! The one error type handlers return: an RFC 9457 problem.

use dropshot::{ErrorStatusCode, HttpError, HttpResponseError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One violation of the request's schema.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct FieldError {
    /// JSON pointer into the body, or `/query/<name>`, `/path/<name>`.
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Response headers that go with this problem (Retry-After, WWW-Authenticate, ...).
    #[serde(skip)]
    #[schemars(skip)]
    pub headers: Option<http::HeaderMap>,
}

/// What the extractors in `runtime::extract` put into an `HttpError` so that the
/// problem built from it keeps the request id and every violation.
#[derive(Serialize, Deserialize)]
pub(crate) struct Carried {
    pub request_id: String,
    pub errors: Vec<FieldError>,
}

pub(crate) const CARRIED_CODE: &str = "taproom.problem";

impl Problem {
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        let code =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        Problem {
            type_: "about:blank".into(),
            title: code.canonical_reason().unwrap_or("Error").into(),
            status: code.as_u16(),
            detail: Some(detail.into()),
            instance: None,
            request_id: String::new(),
            errors: Vec::new(),
            headers: None,
        }
    }

    /// Attaches the request id (every problem a handler returns should have one).
    pub fn request(mut self, request_id: &str) -> Self {
        self.request_id = request_id.to_string();
        self
    }

    /// Adds a response header (values that are not valid header text are dropped).
    pub fn header(mut self, name: http::header::HeaderName, value: &str) -> Self {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            self.headers
                .get_or_insert_with(http::HeaderMap::new)
                .insert(name, value);
        }
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, detail)
    }

    /// An unexpected failure: logged in full by the caller, returned without internals.
    pub fn internal(log: &slog::Logger, error: &dyn std::fmt::Display) -> Self {
        slog::error!(log, "internal error"; "error" => %error);
        Self::new(
            500,
            "The service failed to process the request; it has been logged.",
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut p = Self::new(
            400,
            "The request does not match the API schema; see `errors`.",
        );
        p.type_ = "https://taproom.dev/problems/validation".into();
        p.errors = errors;
        p
    }

    /// Wraps this problem into an `HttpError`, for extractors (whose error type is fixed).
    pub(crate) fn into_http_error(self) -> HttpError {
        let carried = Carried {
            request_id: self.request_id,
            errors: self.errors,
        };
        let status = ErrorStatusCode::from_u16(self.status)
            .unwrap_or(ErrorStatusCode::INTERNAL_SERVER_ERROR);
        HttpError {
            status_code: status,
            error_code: Some(CARRIED_CODE.into()),
            external_message: self.detail.unwrap_or_default(),
            internal_message: serde_json::to_string(&carried).unwrap_or_default(),
            // Extractors' problems (401 with WWW-Authenticate, 503 with Retry-After) keep
            // their headers too.
            headers: self.headers.map(Box::new),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.title,
            self.detail.as_deref().unwrap_or("")
        )
    }
}

impl From<HttpError> for Problem {
    fn from(e: HttpError) -> Self {
        let mut p = Problem::new(e.status_code.as_u16(), e.external_message);
        p.headers = e.headers.map(|h| *h);
        if e.error_code.as_deref() == Some(CARRIED_CODE) {
            if let Ok(c) = serde_json::from_str::<Carried>(&e.internal_message) {
                p.request_id = c.request_id;
                if !c.errors.is_empty() {
                    p.type_ = "https://taproom.dev/problems/validation".into();
                }
                p.errors = c.errors;
            }
        }
        p
    }
}

impl HttpResponseError for Problem {
    fn status_code(&self) -> ErrorStatusCode {
        ErrorStatusCode::from_u16(self.status).unwrap_or(ErrorStatusCode::INTERNAL_SERVER_ERROR)
    }

    fn response_headers(&self) -> Option<http::HeaderMap> {
        self.headers.clone()
    }
}
