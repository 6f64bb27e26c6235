//! Distributed tracing: W3C trace context (`traceparent`, `tracestate`) accepted on every
//! request and sent on every call a generated client makes, stored with outbox events and
//! carried in NATS message headers, so one trace follows a checkout through orders,
//! beers, promotions and the event's delivery.
//!
//! Spans are kept here, small and cheap: without an OTLP endpoint
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`) a span is its ids and nothing is built or sent; with
//! one it also keeps a name, a start time and attributes, and a finished span becomes an
//! OpenTelemetry `SpanData` for the SDK's batch processor and the OTLP/HTTP exporter.
//! The span of the work in progress is a task-local ([`current`]): outgoing calls,
//! outbox writes and log lines find it there.

use anyhow::Result;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks,
    SpanProcessor,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Where one service's spans go: an OTLP endpoint, or nowhere.
#[derive(Debug)]
pub struct Tracer {
    processor: Option<BatchSpanProcessor>,
    scope: InstrumentationScope,
}

impl Tracer {
    /// A tracer that exports nothing.
    pub fn off() -> Arc<Tracer> {
        Arc::new(Tracer {
            processor: None,
            scope: InstrumentationScope::builder("taproom").build(),
        })
    }

    /// `service`'s tracer as configured: OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_config(config: &super::config::Config, service: &str) -> Result<Arc<Tracer>> {
        match &config.otel_exporter_otlp_endpoint {
            Some(endpoint) if !endpoint.is_empty() => Tracer::otlp(service, endpoint),
            _ => Ok(Tracer::off()),
        }
    }

    /// Exports `service`'s spans over OTLP/HTTP (protobuf) to `endpoint` (the base URL,
    /// as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it; `/v1/traces` is appended), batched
    /// as the standard `OTEL_BSP_*` variables say.
    pub fn otlp(service: &str, endpoint: &str) -> Result<Arc<Tracer>> {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_http_client(RuntimeClient::new()?)
            .build()?;
        let mut processor = BatchSpanProcessor::builder(exporter).build();
        // Database calls become spans too (sqlx reports them as `tracing` events).
        super::dbspans::install();
        processor.set_resource(
            &opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        );
        Ok(Arc::new(Tracer {
            processor: Some(processor),
            scope: InstrumentationScope::builder("taproom")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }))
    }

    /// A span that starts now: a child of `parent`, or the root of a new trace.
    pub fn start(
        self: &Arc<Self>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
    ) -> Span {
        Span::new(self.exports().then_some(self), name, kind, parent)
    }

    /// Whether spans go anywhere.
    pub fn exports(&self) -> bool {
        self.processor.is_some()
    }

    /// Sends what is batched (at shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.processor {
            let _ = p.force_flush();
        }
    }
}

/// One unit of work of a trace: its ids, and what is exported of it if spans go
/// anywhere. A span that goes nowhere is its ids alone, with no tracer to count
/// references to (a count every core would write on every request) and nothing
/// allocated: name, kind, start time and attributes are kept only for export.
#[derive(Debug)]
pub struct Span {
    context: SpanContext,
    parent: SpanId,
    export: Option<Box<Export>>,
}

/// What a span that will be exported has besides its ids.
#[derive(Debug)]
struct Export {
    tracer: Arc<Tracer>,
    remote_parent: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl Span {
    /// A span that starts now, exported through `tracer` if there is one.
    fn new(
        tracer: Option<&Arc<Tracer>>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
    ) -> Span {
        let ids = RandomIdGenerator::default();
        let (trace_id, flags, state, parent_id, remote) = match parent {
            Some(p) if p.is_valid() => (
                p.trace_id(),
                p.trace_flags(),
                p.trace_state().clone(),
                p.span_id(),
                p.is_remote(),
            ),
            _ => (
                ids.new_trace_id(),
                TraceFlags::SAMPLED,
                TraceState::default(),
                SpanId::INVALID,
                false,
            ),
        };
        Span {
            context: SpanContext::new(trace_id, ids.new_span_id(), flags, false, state),
            parent: parent_id,
            export: tracer.map(|tracer| {
                Box::new(Export {
                    tracer: tracer.clone(),
                    remote_parent: remote,
                    kind,
                    name: name.into(),
                    start: SystemTime::now(),
                    attributes: Vec::new(),
                })
            }),
        }
    }

    pub fn context(&self) -> &SpanContext {
        &self.context
    }

    /// Whether the span will be exported (attributes are worth making).
    pub fn recording(&self) -> bool {
        self.export.is_some()
    }

    /// Moves the span's start back (a span made after its work, from its duration).
    pub fn started_at(&mut self, start: SystemTime) {
        if let Some(export) = &mut self.export {
            export.start = start;
        }
    }

    /// Names the span (a server span learns its operation only after routing).
    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(export) = &mut self.export {
            export.name = name.into();
        }
    }

    /// Adds the attribute `make` makes, if the span is recording (else `make` is not
    /// called: nothing is allocated for a span that goes nowhere).
    pub fn set_attribute(&mut self, make: impl FnOnce() -> KeyValue) {
        if let Some(export) = &mut self.export {
            export.attributes.push(make());
        }
    }

    /// What this span's work runs inside (see [`Current::scope`]).
    pub fn current(&self) -> Current {
        Current {
            context: self.context.clone(),
            tracer: self.export.as_ref().map(|export| export.tracer.clone()),
        }
    }

    /// Ends the span; `error` marks it failed.
    pub fn end(self, error: Option<String>) {
        let Some(export) = self.export else {
            return;
        };
        let Export {
            tracer,
            remote_parent,
            kind,
            name,
            start,
            attributes,
        } = *export;
        let Some(processor) = &tracer.processor else {
            return;
        };
        processor.on_end(SpanData {
            span_context: self.context,
            parent_span_id: self.parent,
            parent_span_is_remote: remote_parent,
            span_kind: kind,
            name,
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match error {
                Some(description) => Status::error(description),
                None => Status::Unset,
            },
            instrumentation_scope: tracer.scope.clone(),
        });
    }

    /// Ends the span of an HTTP exchange with its status (none: no answer came).
    pub fn end_http(mut self, status: Option<u16>) {
        let Some(export) = &mut self.export else {
            return;
        };
        if let Some(status) = status {
            export.attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        // OpenTelemetry's HTTP conventions: 5xx (and no answer) fail a span; a server's
        // 4xx is the client's mistake, not its failure.
        let failed = match (status, &export.kind) {
            (None, _) => Some("no response".to_string()),
            (Some(s), _) if s >= 500 => Some(format!("HTTP {s}")),
            (Some(s), SpanKind::Client) if s >= 400 => Some(format!("HTTP {s}")),
            _ => None,
        };
        self.end(failed);
    }
}

/// The span work is running under, and where its children go (`tracer`: only when
/// spans are exported).
#[derive(Debug, Clone)]
pub struct Current {
    pub context: SpanContext,
    pub tracer: Option<Arc<Tracer>>,
}

tokio::task_local! {
    static CURRENT: Current;
}

impl Current {
    /// Runs `f` with this span as the current one.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// Calls `f` (one poll of a request's handler) with this span as the current one.
    pub fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// A child span of this one, starting now.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        Span::new(self.tracer.as_ref(), name, kind, Some(&self.context))
    }

    /// Whether spans of this work are exported.
    pub fn exports(&self) -> bool {
        self.tracer.is_some()
    }
}

/// The span the running task works under, if any.
pub fn current() -> Option<Current> {
    CURRENT.try_with(Current::clone).ok()
}

/// `traceparent` for `context` (W3C Trace Context, version 00).
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// `tracestate` for `context`, if it has one.
pub fn tracestate(context: &SpanContext) -> Option<String> {
    let state = context.trace_state().header();
    (!state.is_empty()).then_some(state)
}

/// The remote span context `traceparent` (and `tracestate`) name, when well-formed; a
/// malformed one is ignored and the work starts a new trace (W3C Trace Context).
pub fn remote(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<SpanContext> {
    struct Pair<'a>(Option<&'a str>, Option<&'a str>);
    impl opentelemetry::propagation::Extractor for Pair<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => self.0,
                TRACESTATE => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }
    traceparent?;
    let cx = TraceContextPropagator::new().extract(&Pair(traceparent, tracestate));
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.clone())
}

/// The remote span context of an HTTP request's headers.
pub fn from_headers(headers: &http::HeaderMap) -> Option<SpanContext> {
    // Looked up by `HeaderName`: a `&str` name is parsed again on every lookup.
    const PARENT: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
    const STATE: http::HeaderName = http::HeaderName::from_static(TRACESTATE);
    let parent = headers.get(PARENT)?.to_str().ok();
    remote(parent, headers.get(STATE).and_then(|v| v.to_str().ok()))
}

/// `log` with the current span's ids, when there is one (for work outside a request,
/// such as taking an event from NATS).
pub fn logger(log: &slog::Logger) -> slog::Logger {
    match current() {
        Some(current) => log.new(ids(&current.context)),
        None => log.clone(),
    }
}

/// `trace_id` and `span_id`, as log keys.
pub fn ids(context: &SpanContext) -> slog::OwnedKV<impl slog::SendSyncRefUnwindSafeKV> {
    slog::o!(
        "trace_id" => Hex(context.trace_id().to_bytes()),
        "span_id" => Hex(context.span_id().to_bytes()),
    )
}

/// An id written as lowercase hex (the W3C form) when a line is logged, so nothing is
/// formatted for a request that logs nothing more than its one line. Digits come from a
/// table of each byte's two: through `fmt`'s padded hex the two ids cost ~1,600
/// instructions a line, a digit at a time ~280.
struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    fn write<'a>(&self, text: &'a mut [[u8; 2]; 16]) -> &'a str {
        for (pair, byte) in text.iter_mut().zip(self.0) {
            *pair = super::logline::HEX_PAIRS[usize::from(byte)];
        }
        let text = text[..N].as_flattened();
        debug_assert!(text.is_ascii());
        // SAFETY: every byte is a digit from `HEX_PAIRS`, ASCII, so the text is UTF-8
        // (checking it again cost a hundred instructions a log line).
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

impl<const N: usize> slog::Value for Hex<N> {
    fn serialize(
        &self,
        _: &slog::Record,
        key: slog::Key,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        serializer.emit_str(key, self.write(&mut [[0; 2]; 16]))
    }
}

/// Trace ids are never all zeros; a valid id for tests and parsing checks.
pub fn is_trace_id(text: &str) -> bool {
    TraceId::from_hex(text).is_ok_and(|id| id != TraceId::INVALID)
}

/// Every generated client's calls become child spans of the current span and carry its
/// context (installed once per process, see [`install`]).
struct Calls;

struct CallSpan(Span);

impl taproom_client::CallObserver for Calls {
    fn start(
        &self,
        operation_id: &'static str,
        request: &mut reqwest::Request,
    ) -> Option<Box<dyn taproom_client::CallEnd>> {
        let current = current()?;
        let mut span = current.child(operation_id, SpanKind::Client);
        span.set_attribute(|| {
            KeyValue::new("http.request.method", request.method().as_str().to_string())
        });
        span.set_attribute(|| KeyValue::new("url.full", request.url().to_string()));
        let headers = request.headers_mut();
        if let Ok(value) = http::HeaderValue::from_str(&traceparent(span.context())) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = tracestate(span.context()) {
            if let Ok(value) = http::HeaderValue::from_str(&state) {
                headers.insert(TRACESTATE, value);
            }
        }
        Some(Box::new(CallSpan(span)))
    }
}

impl taproom_client::CallEnd for CallSpan {
    fn end(self: Box<Self>, status: Option<u16>) {
        self.0.end_http(status);
    }
}

/// Makes the generated clients of this process send trace context (idempotent).
pub fn install() {
    taproom_client::observe_calls(Box::new(Calls));
}

/// An OTLP exporter's HTTP client: the services' reqwest, run on the runtime that made
/// it. The SDK's batch processor exports from a thread of its own, outside any tokio
/// runtime, so each request is spawned onto ours and awaited through a channel.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeClient {
    fn new() -> Result<RuntimeClient> {
        Ok(RuntimeClient {
            client: super::calls::client(std::time::Duration::from_secs(10), Default::default())?,
            runtime: tokio::runtime::Handle::try_current()?,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let answer = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        });
        answer.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_their_w3c_hex() {
        for (trace, span) in [
            (
                0x0af7651916cd43dd8448eb211c80319cu128,
                0xb7ad6b7169203331u64,
            ),
            (1, 1),
            (u128::MAX, u64::MAX),
        ]
        .into_iter()
        // Every byte value, in every position of both ids.
        .chain((0..=255u8).map(|b| {
            fn bytes<const N: usize>(b: u8, salt: u8) -> [u8; N] {
                std::array::from_fn(|i| b.wrapping_add(i as u8 * 17) ^ salt)
            }
            (
                u128::from_be_bytes(bytes(b, 0)),
                u64::from_be_bytes(bytes(b, 1)),
            )
        })) {
            let (trace, span) = (TraceId::from(trace), SpanId::from(span));
            assert_eq!(
                Hex(trace.to_bytes()).write(&mut [[0; 2]; 16]),
                trace.to_string()
            );
            assert_eq!(
                Hex(span.to_bytes()).write(&mut [[0; 2]; 16]),
                span.to_string()
            );
        }
    }

    #[test]
    fn a_traceparent_round_trips_and_a_malformed_one_is_ignored() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = remote(Some(parent), Some("vendor=x")).unwrap();
        assert_eq!(traceparent(&context), parent);
        assert_eq!(tracestate(&context).as_deref(), Some("vendor=x"));
        assert!(context.is_remote());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert!(remote(Some(bad), None).is_none(), "{bad}");
        }
        assert!(remote(None, Some("vendor=x")).is_none());
    }

    #[test]
    fn a_child_joins_its_parents_trace_and_a_root_starts_one() {
        let tracer = Tracer::off();
        let root = tracer.start("checkout_order", SpanKind::Server, None);
        assert!(is_trace_id(&root.context().trace_id().to_string()));
        let child = root.current().child("get_beer", SpanKind::Client);
        assert_eq!(child.context().trace_id(), root.context().trace_id());
        assert_ne!(child.context().span_id(), root.context().span_id());
        assert_eq!(child.parent, root.context().span_id());
        assert!(!child.recording());
    }
}
