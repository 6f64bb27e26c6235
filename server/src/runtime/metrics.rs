//! Each service's metrics, served in the Prometheus (OpenMetrics) text format on
//! `GET /metrics` by the service's own server. The endpoint is unpublished and internal:
//! no front door routes it (the gateways route only the specs' public prefixes).
//!
//! Labels are bounded: operation ids (a fixed set per service) and status classes, never
//! paths, ids or user input. docs/operations.md explains every metric.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

/// The media type Prometheus asks for and this text is in.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a routed request is labelled with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation_id: &'static str,
    /// `1xx` .. `5xx`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation_id: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Keyring fetches by result.
pub type Refreshes = Family<ResultLabels, Counter>;

/// One service's metrics. Cheap to share: every metric is a handle on shared atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Each operation seen so far (a fixed, small set), with its series, so that a
    /// request costs one look-up.
    /// Hashed with foldhash: the keys are the router's own operation ids, never a
    /// caller's input, and SipHash was most of the look-up.
    operations: RwLock<HashMap<String, Arc<Operation>, foldhash::fast::RandomState>>,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub db_connections: Gauge,
    pub db_idle_connections: Gauge,
    pub db_max_connections: Gauge,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    pub outbox_deliveries: Counter,
    pub outbox_failures: Counter,
    pub events_consumed: Counter,
    pub events_duplicates: Counter,
    pub login_throttled: Counter,
    pub tokens_refused: Counter,
    pub keyring_refreshes: Refreshes,
}

/// One operation's request series.
#[derive(Debug)]
pub struct Operation {
    /// The operation id, as label value and span name.
    pub name: &'static str,
    duration: Histogram,
    /// `2xx` … `5xx` (dropshot sends no `1xx`).
    by_class: [Counter; 4],
}

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Request latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            operations: RwLock::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            in_flight: Gauge::default(),
            db_connections: Gauge::default(),
            db_idle_connections: Gauge::default(),
            db_max_connections: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            outbox_deliveries: Counter::default(),
            outbox_failures: Counter::default(),
            events_consumed: Counter::default(),
            events_duplicates: Counter::default(),
            login_throttled: Counter::default(),
            tokens_refused: Counter::default(),
            keyring_refreshes: Family::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "http_server_requests",
            "Requests answered, by operationId and status class",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "http_server_request_duration",
            "Time from a request's arrival to its response, by operationId",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "http_server_requests_in_flight",
            "Requests being handled now",
            m.in_flight.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections (in use and idle)",
            m.db_connections.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Open database connections not in use",
            m.db_idle_connections.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "The pool's limit (DATABASE_MAX_CONNECTIONS)",
            m.db_max_connections.clone(),
        );
        registry.register(
            "outbox_pending_events",
            "Events written to the outbox and not yet delivered",
            m.outbox_depth.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_pending_event_age",
            "Age of the oldest undelivered event (0 when none)",
            Unit::Seconds,
            m.outbox_oldest_age.clone(),
        );
        registry.register(
            "outbox_deliveries",
            "Events the relay delivered (acknowledged by the receiver)",
            m.outbox_deliveries.clone(),
        );
        registry.register(
            "outbox_delivery_failures",
            "Delivery attempts that failed (each is retried with backoff)",
            m.outbox_failures.clone(),
        );
        registry.register(
            "events_consumed",
            "Events taken (their effect committed), over HTTP or NATS",
            m.events_consumed.clone(),
        );
        registry.register(
            "events_duplicates",
            "Events received again after they had taken effect (ignored)",
            m.events_duplicates.clone(),
        );
        registry.register(
            "login_throttled",
            "Login attempts refused with 429 because of earlier failures",
            m.login_throttled.clone(),
        );
        registry.register(
            "tokens_refused",
            "Requests refused with 401 for a missing, invalid or expired bearer token",
            m.tokens_refused.clone(),
        );
        registry.register(
            "keyring_refreshes",
            "Fetches of the users service's public keys (JWKS), by result",
            m.keyring_refreshes.clone(),
        );
        registry.register_collector(Box::new(Process));
        m
    }

    /// The series of operation `op`, made on its first request.
    fn operation(&self, op: &str) -> Arc<Operation> {
        let mut operations = self.operations.write().expect("metrics lock");
        operations
            .entry(op.to_string())
            .or_insert_with(|| {
                // Operation ids are few and fixed: each name is kept once for good.
                let operation_id: &'static str = Box::leak(op.to_string().into_boxed_str());
                let counter = |status| {
                    self.requests
                        .get_or_create(&RequestLabels {
                            operation_id,
                            status,
                        })
                        .clone()
                };
                Arc::new(Operation {
                    name: operation_id,
                    duration: self
                        .duration
                        .get_or_create(&OperationLabels { operation_id })
                        .clone(),
                    by_class: CLASSES.map(counter),
                })
            })
            .clone()
    }

    /// Counts a finished request of `op` (`None`: no route matched, counted as
    /// `unmatched`); returns its operation's name.
    pub fn observe(
        &self,
        op: Option<&str>,
        status: u16,
        latency: std::time::Duration,
    ) -> &'static str {
        let op = op.unwrap_or("unmatched");
        let class = usize::from(status.clamp(200, 599) / 100 - 2);
        let count = |operation: &Operation| {
            operation.by_class[class].inc();
            operation.duration.observe(latency.as_secs_f64());
            operation.name
        };
        // Counted under the read lock: no reference count to raise and drop on every
        // request (an atomic write to a line every core shares).
        if let Some(known) = self.operations.read().expect("metrics lock").get(op) {
            return count(known);
        }
        count(&self.operation(op))
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Updates the pool and outbox gauges (read when scraped, not on every change).
pub async fn refresh(metrics: &Metrics, db: &super::Db) {
    metrics.db_connections.set(i64::from(db.pool.size()));
    metrics
        .db_idle_connections
        .set(i64::try_from(db.pool.num_idle()).unwrap_or(i64::MAX));
    metrics
        .db_max_connections
        .set(i64::from(db.pool.options().get_max_connections()));
    if db.outbox {
        // A failed query leaves the last values: /readyz reports the database itself.
        if let Ok(backlog) = super::outbox::backlog(db).await {
            metrics.outbox_depth.set(backlog.depth);
            metrics.outbox_oldest_age.set(backlog.oldest_age_secs);
        }
    }
}

/// The process's own metrics (`process_*`, as Prometheus' client libraries name them),
/// read from /proc when scraped. Empty where there is no /proc.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = ProcStat::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size",
                stat.rss_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size",
                stat.vsize_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch",
                stat.start_time_seconds,
            ),
            ("process_threads", "Threads of the process", stat.threads),
            ("process_open_fds", "Open file descriptors", stat.open_fds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time_seconds: f64,
    threads: f64,
    open_fds: f64,
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (2nd field) may hold spaces; fields after it are plain.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        Some(ProcStat {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            threads: field(20)?,
            start_time_seconds: boot + field(22)? / ticks,
            vsize_bytes: field(23)?,
            rss_bytes: field(24)? * page,
            open_fds,
        })
    }
}

/// `GET /metrics` for a service: its metrics, with the pool and outbox read now.
pub async fn serve<C: super::ServiceContext>(
    rqctx: dropshot::RequestContext<C>,
) -> Result<http::Response<dropshot::Body>, dropshot::HttpError> {
    let cx = rqctx.context();
    if let Some(db) = cx.store().sql() {
        refresh(cx.metrics(), db).await;
    }
    let text = cx.metrics().render();
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(text.into())
        .map_err(|e| dropshot::HttpError::for_internal_error(e.to_string()))
}

/// The unpublished `/metrics` endpoint, for `server::start` to register.
pub fn endpoint<C: super::ServiceContext>() -> dropshot::ApiEndpoint<C> {
    unpublished_get!("metrics", serve::<C>, "/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_status_class() {
        let m = Metrics::new();
        m.observe(Some("get_beer"), 200, std::time::Duration::from_millis(3));
        m.observe(Some("get_beer"), 404, std::time::Duration::from_millis(1));
        m.observe(None, 404, std::time::Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains(r#"http_server_requests_total{operation_id="get_beer",status="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_requests_total{operation_id="unmatched",status="4xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{operation_id="get_beer"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
