//! Each service's metrics, served in the Prometheus (OpenMetrics) text format on
//! `GET /metrics` by the service's own server. The endpoint is unpublished and internal:
//! no front door routes it (the gateways route only the specs' public prefixes).
//!
//! Labels are bounded: operation ids (a fixed set per service) and status classes, never
//! paths, ids or user input. docs/operations.md explains every metric.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

/// One service's metrics. Cheap to share: every metric is a handle on atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests: counted by operation, status class and latency, and in flight.
    requests: Arc<RequestSeries>,
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

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Request latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The request series, counted per thread: each thread that serves requests adds to a
/// shard of its own, and the shards are summed when `/metrics` is read. Counters every
/// core writes (and prometheus-client's histogram, which takes a lock per observation)
/// moved their cache lines between the cores on every request, which cost ping about
/// 5% of its throughput on two cores (docs/performance.md, "Fifth round").
#[derive(Debug)]
struct RequestSeries {
    /// Tells this service's shards from other services' in the same process.
    id: usize,
    shards: Mutex<Vec<Arc<Shard>>>,
    names: Arc<Names>,
}

/// Each operation id seen, kept once for good (a fixed, small set per service).
#[derive(Debug, Default)]
struct Names(Mutex<Vec<&'static str>>);

/// Aligned to its own cache lines, so that no two threads' shards share one.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    /// Requests started on this thread less those of them finished (wherever they
    /// finished: see [`InFlight`]).
    in_flight: AtomicI64,
    /// Locked by its own thread on every request, by a scrape otherwise: uncontended.
    /// Each operation's name (kept for good) and counts. The name is kept beside the
    /// counts, not only as the key, so that one `get_mut` finds both.
    operations: Mutex<HashMap<&'static str, (&'static str, Counts), foldhash::fast::RandomState>>,
    /// The series' names (shared by its shards).
    names: Arc<Names>,
}

/// A request being served, counted in the shard of the thread it arrived on: it is
/// finished there too, so that finishing needs no look-up and takes no lock but the
/// shard's own (uncontended unless the request moved to another thread).
#[must_use = "a request is in flight until it is finished"]
pub struct InFlight(Arc<Shard>);

impl InFlight {
    /// The request has been answered (`op` `None`: no route matched, counted as
    /// `unmatched`); returns its operation's name.
    pub fn finish(
        self,
        op: Option<&str>,
        status: u16,
        latency: std::time::Duration,
    ) -> &'static str {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.count(op, status, latency)
    }
}

/// One operation's series (in a shard, written under its lock; or summed over the
/// shards).
#[derive(Debug, Default)]
struct Counts {
    /// `2xx` … `5xx` (dropshot sends no `1xx`).
    by_class: [u64; 4],
    /// Per bucket of `LATENCY_BUCKETS`, then `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: u64,
}

thread_local! {
    /// This thread's shard of each service's series (by `RequestSeries::id`).
    static SHARDS: RefCell<Vec<(usize, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

impl Default for RequestSeries {
    fn default() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        RequestSeries {
            id: NEXT.fetch_add(1, Relaxed),
            shards: Mutex::default(),
            names: Arc::default(),
        }
    }
}

impl RequestSeries {
    /// Runs `f` on this thread's shard, made on the thread's first request.
    fn shard<T>(&self, f: impl FnOnce(&Arc<Shard>) -> T) -> T {
        SHARDS.with_borrow_mut(|mine| {
            if let Some((_, shard)) = mine.iter().find(|(id, _)| *id == self.id) {
                return f(shard);
            }
            let shard = Arc::new(Shard {
                in_flight: AtomicI64::default(),
                operations: Mutex::default(),
                names: self.names.clone(),
            });
            self.shards
                .lock()
                .expect("metrics shards")
                .push(shard.clone());
            mine.push((self.id, shard.clone()));
            f(&shard)
        })
    }
}

impl Names {
    /// `op`, kept for good the first time it is seen.
    fn get(&self, op: &str) -> &'static str {
        let mut names = self.0.lock().expect("metrics names");
        if let Some(name) = names.iter().find(|name| **name == op) {
            return name;
        }
        let name: &'static str = Box::leak(op.to_string().into_boxed_str());
        names.push(name);
        name
    }
}

impl Shard {
    /// Counts an answered request of `op`; returns its operation's name.
    fn count(&self, op: Option<&str>, status: u16, latency: std::time::Duration) -> &'static str {
        let op = op.unwrap_or("unmatched");
        let class = usize::from(status.clamp(200, 599) / 100 - 2);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(LATENCY_BUCKETS.len());
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let mut operations = self.operations.lock().expect("metrics shard");
        let (name, counts) = match operations.get_mut(op) {
            Some(found) => found,
            None => {
                let name = self.names.get(op);
                operations.entry(name).or_insert((name, Counts::default()))
            }
        };
        counts.by_class[class] += 1;
        counts.buckets[bucket] += 1;
        counts.sum_nanos = counts.sum_nanos.saturating_add(nanos);
        name
    }
}

/// The series, as `/metrics` shows them.
#[derive(Debug)]
struct RequestCollector(Arc<RequestSeries>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut in_flight = 0;
        let mut totals: BTreeMap<&'static str, Counts> = BTreeMap::new();
        for shard in self.0.shards.lock().expect("metrics shards").iter() {
            in_flight += shard.in_flight.load(Relaxed);
            for (name, counts) in shard.operations.lock().expect("metrics shard").values() {
                let total = totals.entry(name).or_default();
                for (sum, n) in total.by_class.iter_mut().zip(counts.by_class) {
                    *sum += n;
                }
                for (sum, n) in total.buckets.iter_mut().zip(counts.buckets) {
                    *sum += n;
                }
                total.sum_nanos = total.sum_nanos.saturating_add(counts.sum_nanos);
            }
        }
        let mut requests = encoder.encode_descriptor(
            "http_server_requests",
            "Requests answered, by operationId and status class",
            None,
            MetricType::Counter,
        )?;
        for (&operation_id, total) in &totals {
            for (status, n) in CLASSES.into_iter().zip(total.by_class) {
                requests
                    .encode_family(&RequestLabels {
                        operation_id,
                        status,
                    })?
                    .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
            }
        }
        let mut duration = encoder.encode_descriptor(
            "http_server_request_duration",
            "Time from a request's arrival to its response, by operationId",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (&operation_id, total) in &totals {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(total.buckets)
                .collect();
            duration
                .encode_family(&OperationLabels { operation_id })?
                .encode_histogram::<NoLabelSet>(
                    total.sum_nanos as f64 / 1e9,
                    total.buckets.iter().sum(),
                    &buckets,
                    None,
                )?;
        }
        let gauge = ConstGauge::new(in_flight);
        gauge.encode(encoder.encode_descriptor(
            "http_server_requests_in_flight",
            "Requests being handled now",
            None,
            gauge.metric_type(),
        )?)
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Arc::default(),
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
        registry.register_collector(Box::new(RequestCollector(m.requests.clone())));
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

    /// A request has arrived; it is in flight until finished.
    pub fn request_started(&self) -> InFlight {
        InFlight(self.requests.shard(|shard| {
            shard.in_flight.fetch_add(1, Relaxed);
            shard.clone()
        }))
    }

    /// Counts an answered request of `op` (`None`: no route matched, counted as
    /// `unmatched`) that was not counted in flight; returns its operation's name.
    pub fn observe(
        &self,
        op: Option<&str>,
        status: u16,
        latency: std::time::Duration,
    ) -> &'static str {
        self.requests
            .shard(|shard| shard.count(op, status, latency))
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

    /// Requests counted on many threads, and finished on other threads than they
    /// started on, add up.
    #[test]
    fn every_threads_requests_are_summed() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.request_started().finish(
                            Some("ping"),
                            200,
                            std::time::Duration::from_micros(100),
                        );
                    }
                    // Three still in flight here, finished below on another thread.
                    (0..3).map(|_| m.request_started()).collect::<Vec<_>>()
                })
            })
            .collect();
        let in_flight: Vec<InFlight> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let text = m.render();
        assert!(
            text.contains(r#"http_server_requests_total{operation_id="ping",status="2xx"} 4000"#)
                && text.contains("http_server_requests_in_flight 12"),
            "{text}"
        );
        for request in in_flight {
            request.finish(Some("ping"), 503, std::time::Duration::from_secs(20));
        }
        let text = m.render();
        assert!(
            text.contains(r#"http_server_requests_total{operation_id="ping",status="5xx"} 12"#)
                && text.contains("http_server_requests_in_flight 0")
                && text.contains(
                    r#"http_server_request_duration_seconds_bucket{le="10.0",operation_id="ping"} 4000"#
                )
                && text.contains(
                    r#"http_server_request_duration_seconds_bucket{le="+Inf",operation_id="ping"} 4012"#
                ),
            "{text}"
        );
    }

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
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_bucket{le="0.001",operation_id="get_beer"} 1"#
            ) && text.contains(
                r#"http_server_request_duration_seconds_bucket{le="0.005",operation_id="get_beer"} 2"#
            ) && text.contains(
                r#"http_server_request_duration_seconds_bucket{le="+Inf",operation_id="get_beer"} 2"#
            ) && text.contains(
                r#"http_server_request_duration_seconds_sum{operation_id="get_beer"} 0.004"#
            ),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
