//! What every request reports: its metrics (count by operation and status class,
//! latency, requests in flight) and its server span, whose ids go into every log line of
//! the request and whose context the handler's calls and events carry. Installed on
//! every service's server as dropshot's request hook (a Taproom patch), so a service
//! gets all of it without a line of its own.

use super::metrics::{InFlight, Metrics};
use super::trace::{self, Span, Tracer};
use dropshot::{RequestHook, RequestScope, RequestStart};
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub tracer: Arc<Tracer>,
}

struct Request {
    in_flight: InFlight,
    span: Span,
}

impl RequestHook for Observer {
    fn start(&self, request: &RequestStart<'_>) -> Box<dyn RequestScope> {
        let in_flight = self.metrics.request_started();
        let parent = trace::from_headers(request.request_headers);
        // Named after the operation once routing has found it.
        let mut span = self
            .tracer
            .start("request", SpanKind::Server, parent.as_ref());
        span.set_attribute(|| {
            KeyValue::new("http.request.method", request.method.as_str().to_string())
        });
        span.set_attribute(|| KeyValue::new("request_id", request.request_id.to_string()));
        Box::new(Request { in_flight, span })
    }
}

impl RequestScope for Request {
    fn log_keys(&self) -> Box<dyn slog::SendSyncRefUnwindSafeKV> {
        Box::new(trace::ids(self.span.context()))
    }

    fn run(
        &self,
        _operation_id: &str,
        task: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.span.current().scope(task))
    }

    fn enter(&self, poll: &mut dyn FnMut()) {
        self.span.current().enter(poll)
    }

    fn finish(
        self: Box<Self>,
        operation_id: Option<&str>,
        status: u16,
        latency: std::time::Duration,
    ) {
        let Request {
            in_flight,
            mut span,
        } = *self;
        span.rename(in_flight.finish(operation_id, status, latency));
        if status == 499 {
            span.end(Some("the client went away before the answer".into()));
        } else {
            span.end_http(Some(status));
        }
    }
}
