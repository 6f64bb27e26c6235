//! Headers that follow a call across services. Inside [`CallContext::scope`], every
//! request any generated client sends carries the context's bearer token and request id
//! (unless the request sets its own), so a service calling another on a user's behalf
//! passes both along without threading them through every call.
//!
//! A program may also install one [`CallObserver`] ([`observe_calls`]) that sees every
//! call any generated client makes: the services use it to send W3C trace context
//! (`traceparent`) and to record each call as a span of the request that made it.

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

/// Sees every call a generated client makes (installed once, with [`observe_calls`]).
pub trait CallObserver: Send + Sync + 'static {
    /// Called before `request` (an `operation_id` call) is sent; may add headers. What
    /// it returns is told how the call ended.
    fn start(
        &self,
        operation_id: &'static str,
        request: &mut reqwest::Request,
    ) -> Option<Box<dyn CallEnd>>;
}

/// The end of one observed call.
pub trait CallEnd: Send {
    /// `status`: the response's, or `None` when no response came (refused, timed out).
    fn end(self: Box<Self>, status: Option<u16>);
}

static OBSERVER: std::sync::OnceLock<Box<dyn CallObserver>> = std::sync::OnceLock::new();

/// Installs `observer` for every call of this process; only the first one counts.
pub fn observe_calls(observer: Box<dyn CallObserver>) {
    let _ = OBSERVER.set(observer);
}

/// Sends `request` through `send`, seen by the observer if one is installed (the
/// generated clients' `exec` hook).
#[doc(hidden)]
pub async fn observed<F, Fut>(
    operation_id: &'static str,
    mut request: reqwest::Request,
    send: F,
) -> reqwest::Result<reqwest::Response>
where
    F: FnOnce(reqwest::Request) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let Some(end) = OBSERVER
        .get()
        .and_then(|o| o.start(operation_id, &mut request))
    else {
        return send(request).await;
    };
    let result = send(request).await;
    end.end(result.as_ref().ok().map(|r| r.status().as_u16()));
    result
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
