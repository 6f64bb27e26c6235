//! Headers that follow a call across services. Inside [`CallContext::scope`], every
//! request any generated client sends carries the context's bearer token and request id
//! (unless the request sets its own), so a service calling another on a user's behalf
//! passes both along without threading them through every call.

use reqwest::header::{HeaderValue, AUTHORIZATION};

tokio::task_local! {
    static CONTEXT: CallContext;
}

/// What calls made inside [`CallContext::scope`] carry.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Sent as `X-Request-Id`, so the callee logs the caller's id.
    pub request_id: Option<String>,
}

impl CallContext {
    /// Runs `f` with this context applied to every generated client's requests.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        CONTEXT.scope(self, f).await
    }
}

/// The generated clients' pre-request hook (see `cargo xtask gen`).
#[doc(hidden)]
pub fn apply(request: &mut reqwest::Request) {
    let _ = CONTEXT.try_with(|cx| {
        let headers = request.headers_mut();
        if let Some(token) = &cx.bearer_token {
            if let (false, Ok(mut value)) = (
                headers.contains_key(AUTHORIZATION),
                HeaderValue::from_str(&format!("Bearer {token}")),
            ) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        if let Some(id) = &cx.request_id {
            if let (false, Ok(value)) = (
                headers.contains_key("x-request-id"),
                HeaderValue::from_str(id),
            ) {
                headers.insert("x-request-id", value);
            }
        }
    });
}
