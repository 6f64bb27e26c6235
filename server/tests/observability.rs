//! Metrics and tracing with the real parts: a Prometheus server scraping `server all`,
//! and one checkout followed through orders, beers and promotions (HTTP and NATS
//! delivery) in the logs and in the spans exported over OTLP to a receiver that decodes
//! the official OpenTelemetry protobuf messages.
//!
//! Needs `prometheus` (Debian's package; `PROMETHEUS` names another binary) and
//! `nats-server` (`NATS_SERVER`).

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::ServerAll;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_every_service_and_counts_an_operation() {
    let dir = tempfile::tempdir().unwrap();
    let all = ServerAll::on_free_ports(dir.path(), &[("LOG_LEVEL", "warning")], Stdio::null());
    let http = reqwest::Client::new();
    let beers = all.url("beers").to_string();
    for _ in 0..3 {
        let ping = http.get(format!("{beers}/ping")).send().await.unwrap();
        assert_eq!(ping.status(), 200);
    }
    let missing = http
        .get(format!("{beers}/v1/beers/{}", uuid::Uuid::nil()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Internal only: the built-in gateway does not route /metrics to any service.
    let gateway = all.url("gateway");
    let through_gateway = http.get(format!("{gateway}/metrics")).send().await.unwrap();
    assert_eq!(through_gateway.status(), 404);
    let text = through_gateway.text().await.unwrap();
    assert!(!text.contains("http_server_requests"), "{text}");

    // A real Prometheus scraping every service once a second.
    let mut jobs = String::new();
    for def in taproom_server::SERVICES {
        let target = all.url(def.name).trim_start_matches("http://").to_string();
        jobs.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['{target}']\n",
            def.name
        ));
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
        ),
    )
    .unwrap();
    let port = free_port();
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let _prometheus = Killed(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary} (apt-get install prometheus): {e}")),
    );
    let query = |q: String| {
        let http = http.clone();
        async move {
            let answer: Value = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            answer["data"]["result"].as_array().cloned()
        }
    };
    let value =
        |result: &[Value]| -> Option<f64> { result.first()?["value"][1].as_str()?.parse().ok() };
    let pings = until(
        "Prometheus to have beers' ping count",
        Duration::from_secs(60),
        || {
            let q = query(r#"http_server_requests_total{job="beers",operation_id="ping"}"#.into());
            async move {
                let result = q.await?;
                let n = value(&result)?;
                (n >= 3.0).then_some((n, result))
            }
        },
    )
    .await;
    assert_eq!(
        pings.0, 3.0,
        "each ping counted once (scrapes are not requests)"
    );
    assert_eq!(pings.1[0]["metric"]["status"], "2xx");
    let not_found = query(
        r#"http_server_requests_total{job="beers",operation_id="get_beer",status="4xx"}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(value(&not_found), Some(1.0));
    // Every service is up, and reports its pool and process.
    until(
        "every service to be scraped",
        Duration::from_secs(30),
        || {
            let q = query("up == 1".into());
            async move { (q.await?.len() == taproom_server::SERVICES.len()).then_some(()) }
        },
    )
    .await;
    let latency = query(
        r#"http_server_request_duration_seconds_count{job="beers",operation_id="ping"}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(value(&latency), Some(3.0));
    for metric in ["db_pool_max_connections", "process_resident_memory_bytes"] {
        let result = query(format!(r#"{metric}{{job="orders"}}"#)).await.unwrap();
        assert!(
            value(&result).is_some_and(|v| v > 0.0),
            "{metric}: {result:?}"
        );
    }
    let outbox = query(r#"outbox_pending_events{job="orders"}"#.into())
        .await
        .unwrap();
    assert_eq!(value(&outbox), Some(0.0));
}

/// Spans as an OTLP/HTTP collector receives them: `POST /v1/traces` with an
/// `ExportTraceServiceRequest` in protobuf.
#[derive(Clone, Default)]
struct Receiver {
    /// (service.name, span)
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = self.spans.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_otlp(socket, spans.clone()));
            }
        });
        format!("http://{addr}")
    }

    fn of_trace(&self, trace_id: &str) -> Vec<(String, Span)> {
        let id = hex(trace_id);
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.trace_id == id)
            .cloned()
            .collect()
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// HTTP/1.1 with keep-alive, just enough for the exporter's requests.
async fn serve_otlp(mut socket: tokio::net::TcpStream, spans: Arc<Mutex<Vec<(String, Span)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buffer.drain(..head_end + length).skip(head_end).collect();
        assert!(head.starts_with("post /v1/traces "), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.lock().unwrap().push((service.clone(), span));
                }
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if socket.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A private JetStream server on a free port, stopped when dropped.
fn nats(dir: &std::path::Path) -> (Killed, String) {
    let port = free_port();
    let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let child = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), format!("nats://127.0.0.1:{port}"))
}

/// The trace the client starts: its id, and the id of the client's own span.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn one_checkout_is_one_trace(nats_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let admin = support::server()
        .current_dir(dir.path())
        .env("TAPROOM_ADMIN_PASSWORD", "a strong password")
        .args([
            "admin",
            "create",
            "--username",
            "root",
            "--email",
            "root@example.com",
        ])
        .output()
        .unwrap();
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let log_path = dir.path().join("services.log");
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    if let Some(url) = nats_url {
        env.push(("NATS_URL", url));
    }
    let all = ServerAll::on_free_ports(
        dir.path(),
        &env,
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let gw = all.url("gateway").to_string();
    let http = reqwest::Client::new();
    let post = |path: String, token: String, body: Value, traced: bool| {
        let (http, gw) = (http.clone(), gw.clone());
        async move {
            let mut request = http
                .post(format!("{gw}{path}"))
                .bearer_auth(token)
                .json(&body);
            if traced {
                request = request
                    .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
                    .header("tracestate", "shop=web");
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status < 300, "{path}: {status} {body}");
            body
        }
    };
    let root = support::token(&gw, "root", "a strong password").await;
    let beer = post(
        "/v1/beers".into(),
        root.clone(),
        json!({"sku": "IPA-1", "name": "Trace IPA", "price": "4.50"}),
        false,
    )
    .await;
    post(
        "/v1/promotions".into(),
        root.clone(),
        json!({"code": "TRACE10", "percent_off": 10}),
        false,
    )
    .await;
    let created = http
        .post(format!("{gw}/v1/users"))
        .json(&json!({"username": "tracy", "email": "tracy@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let me = support::token(&gw, "tracy", "correct horse").await;
    let order = post("/v1/orders".into(), me.clone(), json!({}), false).await;
    let order_id = order["id"].as_str().unwrap();
    post(
        format!("/v1/orders/{order_id}/items"),
        me.clone(),
        json!({"beer_id": beer["id"], "quantity": 2}),
        true,
    )
    .await;
    let placed = post(
        format!("/v1/orders/{order_id}/checkout"),
        me.clone(),
        json!({"promo_code": "TRACE10"}),
        true,
    )
    .await;
    assert_eq!(placed["status"], "closed", "{placed}");

    // The logs: every line of those requests, in every service they reached, and the
    // event's consumer, carry the client's trace id.
    let lines_of = |service: &str| -> Vec<Value> {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["service"] == service && l["trace_id"] == TRACE_ID)
            .collect()
    };
    let taken = until(
        "promotions to take the event",
        Duration::from_secs(30),
        || {
            let lines = lines_of("promotions");
            async move {
                let event = lines.iter().any(|l| match nats_url {
                    Some(_) => l["msg"] == "event taken",
                    None => l["operation_id"] == "receive_event",
                });
                event.then_some(lines)
            }
        },
    )
    .await;
    assert!(
        taken
            .iter()
            .any(|l| l["operation_id"] == "check_eligibility"),
        "{taken:?}"
    );
    let beers = lines_of("beers");
    assert!(
        beers.iter().any(|l| l["operation_id"] == "get_beer"),
        "{beers:?}"
    );
    let orders = lines_of("orders");
    for op in ["add_order_item", "checkout_order"] {
        assert!(
            orders.iter().any(|l| l["operation_id"] == op),
            "{op}: {orders:?}"
        );
    }
    // A request without trace context starts a trace of its own.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let untraced: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["service"] == "orders" && l["operation_id"] == "create_order")
        .collect();
    assert_eq!(untraced.len(), 1, "{untraced:?}");
    let own = untraced[0]["trace_id"].as_str().unwrap();
    assert!(taproom_server::runtime::trace::is_trace_id(own) && own != TRACE_ID);
    assert_eq!(untraced[0]["span_id"].as_str().map(str::len), Some(16));

    // The spans, as exported over OTLP: each with its parent.
    let consumer = match nats_url {
        Some(_) => "process taproom.events.order.placed",
        None => "receive_event",
    };
    let spans = until("the spans of the trace", Duration::from_secs(30), || {
        let spans = receiver.of_trace(TRACE_ID);
        async move {
            spans
                .iter()
                .any(|(service, s)| service == "promotions" && s.name == consumer)
                .then_some(spans)
        }
    })
    .await;
    let find = |service: &str, name: &str, kind: i32| -> Span {
        spans
            .iter()
            .find(|(sv, s)| sv == service && s.name == name && s.kind == kind)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| {
                let seen: Vec<_> = spans.iter().map(|(sv, s)| (sv, &s.name, s.kind)).collect();
                panic!("no {kind} span {name} from {service}; {seen:?}")
            })
    };
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let (server, client) = (SpanKind::Server as i32, SpanKind::Client as i32);
    let checkout = find("orders", "checkout_order", server);
    assert_eq!(checkout.parent_span_id, hex(CLIENT_SPAN));
    assert_eq!(checkout.trace_state, "shop=web");
    let asked = find("orders", "check_eligibility", client);
    assert_eq!(asked.parent_span_id, checkout.span_id);
    let answered = find("promotions", "check_eligibility", server);
    assert_eq!(answered.parent_span_id, asked.span_id);
    let adding = find("orders", "add_order_item", server);
    let lookup = find("orders", "get_beer", client);
    assert_eq!(lookup.parent_span_id, adding.span_id);
    assert_eq!(
        find("beers", "get_beer", server).parent_span_id,
        lookup.span_id
    );
    let sent = find("orders", "send order.placed", SpanKind::Producer as i32);
    assert_eq!(
        sent.parent_span_id, checkout.span_id,
        "the event keeps the checkout's context"
    );
    let took = match nats_url {
        Some(_) => find("promotions", consumer, SpanKind::Consumer as i32),
        None => {
            let call = find("orders", "receive_event", client);
            assert_eq!(call.parent_span_id, sent.span_id);
            find("promotions", "receive_event", server)
                .parent_span_id
                .eq(&call.span_id)
                .then_some(call)
                .expect("receive_event's parent is the relay's call")
        }
    };
    if nats_url.is_some() {
        assert_eq!(took.parent_span_id, sent.span_id);
    }

    // Database calls are client spans of the request that made them, those inside its
    // transaction too, in every service; no bound value is in their text.
    let checkout_db = db_spans(&spans, "orders", &checkout.span_id, "sqlite");
    for name in ["UPDATE orders", "UPDATE promo_uses"] {
        assert!(
            checkout_db.iter().any(|s| s.name == name),
            "{name}: {checkout_db:?}"
        );
    }
    for span in &checkout_db {
        let text = attribute(span, "db.query.text").unwrap_or_default();
        assert!(
            !text.contains(order_id) && !text.contains("TRACE10"),
            "{text}"
        );
    }
    let adding_db = db_spans(&spans, "orders", &adding.span_id, "sqlite");
    assert!(
        adding_db.iter().any(|s| s.name == "SELECT order_items"),
        "{adding_db:?}"
    );
    let beer_db = db_spans(
        &spans,
        "beers",
        &find("beers", "get_beer", server).span_id,
        "sqlite",
    );
    assert!(
        beer_db.iter().any(|s| s.name == "SELECT beers"),
        "{beer_db:?}"
    );
}

/// The string attribute `key` of `span`.
fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

/// The database spans of `service` whose parent is `parent`, checked to be client spans
/// of `system` that say what they ran; at least one.
fn db_spans(spans: &[(String, Span)], service: &str, parent: &[u8], system: &str) -> Vec<Span> {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let found: Vec<Span> = spans
        .iter()
        .filter(|(sv, s)| {
            sv == service && s.parent_span_id == parent && attribute(s, "db.system.name").is_some()
        })
        .map(|(_, s)| s.clone())
        .collect();
    assert!(
        !found.is_empty(),
        "no database span of {service} under {parent:02x?}: {:?}",
        spans
            .iter()
            .map(|(sv, s)| (sv, &s.name))
            .collect::<Vec<_>>()
    );
    for span in &found {
        assert_eq!(span.kind, SpanKind::Client as i32, "{span:?}");
        assert_eq!(attribute(span, "db.system.name").as_deref(), Some(system));
        let text = attribute(span, "db.query.text").unwrap_or_default();
        let operation = attribute(span, "db.operation.name").unwrap_or_default();
        assert!(
            !operation.is_empty() && text.to_uppercase().starts_with(&operation),
            "{span:?}"
        );
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
    }
    found
}

/// One request's database calls, inside and outside its transaction, are child spans
/// of its server span, on `backend` (`sqlite` or `postgresql`): the users service alone,
/// with a refresh token exchanged under the client's trace.
async fn database_calls_are_child_spans(backend: &str) {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/users.db?mode=rwc", dir.path().display());
    let mut fleet = support::fleet::Fleet::new();
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    if backend == "sqlite" {
        env.push(("USERS_DATABASE_URL", sqlite.as_str()));
    }
    let users = fleet.start("users", &env);
    support::fleet::ready(&users).await;
    support::fleet::register(&users, "dana", "dana's password").await;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{users}/v1/auth/token"))
        .json(&json!({"username": "dana", "password": "dana's password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let refreshed = http
        .post(format!("{users}/v1/auth/refresh"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);

    let (request, spans) = until("the request's spans", Duration::from_secs(30), || {
        let spans = receiver.of_trace(TRACE);
        async move {
            let request = spans
                .iter()
                .find(|(_, s)| s.name == "refresh_token")?
                .1
                .clone();
            spans
                .iter()
                .any(|(_, s)| s.parent_span_id == request.span_id)
                .then_some((request, spans))
        }
    })
    .await;
    assert_eq!(request.parent_span_id, hex(CLIENT_SPAN));
    let db = db_spans(&spans, "users", &request.span_id, backend);
    // The claim and the role are read in the transaction.
    for name in ["UPDATE refresh_tokens", "SELECT users"] {
        assert!(db.iter().any(|s| s.name == name), "{name}: {db:?}");
    }
    if backend == "postgresql" {
        assert!(db.iter().any(|s| s.name == "COMMIT"), "{db:?}");
    }
    // Each starts its statement's duration before sqlx reported it: within the request.
    for span in &db {
        assert!(
            span.start_time_unix_nano >= request.start_time_unix_nano,
            "{span:?} before {request:?}"
        );
    }
}

#[tokio::test]
async fn database_calls_are_child_spans_on_sqlite() {
    database_calls_are_child_spans("sqlite").await;
}

#[tokio::test]
async fn database_calls_are_child_spans_on_postgresql() {
    database_calls_are_child_spans("postgresql").await;
}

#[tokio::test]
async fn one_checkout_is_one_trace_with_http_delivery() {
    one_checkout_is_one_trace(None).await;
}

#[tokio::test]
async fn one_checkout_is_one_trace_with_nats_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, url) = nats(dir.path());
    one_checkout_is_one_trace(Some(&url)).await;
}
