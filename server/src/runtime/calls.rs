//! Calls to other services: every outgoing HTTP client is built here, so that each is
//! bounded the same way (`SERVICE_TIMEOUT_MS` for connecting and for the whole call) and
//! none follows redirects to somewhere else.

use anyhow::Result;
use std::time::Duration;

/// An HTTP client for calls to other services, sending `headers` with every request.
pub fn client(timeout: Duration, headers: reqwest::header::HeaderMap) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()?)
}
