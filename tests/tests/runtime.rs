//! What every service gets from the shared runtime, checked on the users service:
//! problems for every error (including dropshot's own routing errors), request ids,
//! and CORS.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use serde_json::Value;
use taproom_tests::{on_both_databases, Backend, Users};

const ORIGIN: &str = "https://app.example"; // allowed by the test configuration

async fn send(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn assert_problem(status: u16, headers: &HeaderMap, body: &Value, what: &str) {
    assert_eq!(headers[CONTENT_TYPE], "application/problem+json", "{what}");
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{what}: {body}"
    );
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap(),
        "{what}: request id in body and header"
    );
}

async fn every_error_is_a_problem(backend: Backend) {
    let users = Users::start(backend).await;
    let base = &users.base_url;
    let http = users.raw();
    let (status, headers, body) = send(http.get(format!("{base}/no/such/route"))).await;
    assert_eq!(status, 404);
    assert_problem(status, &headers, &body, "unknown route");

    let (status, headers, body) = send(http.put(format!("{base}/v1/users"))).await;
    assert_eq!(status, 405);
    assert_problem(status, &headers, &body, "wrong method");
    assert_eq!(
        headers["allow"], "GET, POST",
        "405 lists the methods (RFC 9110)"
    );
    let (_, headers, _) =
        send(http.post(format!("{base}/v1/users/{}", uuid::Uuid::now_v7()))).await;
    assert_eq!(headers["allow"], "GET, PATCH, DELETE");

    let (status, headers, body) = send(
        http.post(format!("{base}/v1/users"))
            .header(CONTENT_TYPE, "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 400);
    assert_problem(status, &headers, &body, "validation");
    assert_eq!(body["errors"].as_array().unwrap().len(), 3);

    let (status, headers, body) = send(
        http.post(format!("{base}/v1/users"))
            .header(CONTENT_TYPE, "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 415);
    assert_problem(status, &headers, &body, "content type");

    let (status, headers, body) = send(http.get(format!("{base}/docs/nothing-here.js"))).await;
    assert_eq!(status, 404);
    assert_problem(status, &headers, &body, "unknown docs asset");

    // Successes keep their own media type.
    let (status, headers, _) = send(http.get(format!("{base}/ping"))).await;
    assert_eq!(
        (status, headers[CONTENT_TYPE].to_str().unwrap()),
        (200, "application/json")
    );
}

async fn request_ids_are_accepted_or_made(backend: Backend) {
    let users = Users::start(backend).await;
    let url = format!("{}/v1/users/not-a-uuid", users.base_url);
    let (_, headers, body) = send(
        users
            .raw()
            .get(&url)
            .header("x-request-id", "trace-42.a:b_c"),
    )
    .await;
    assert_eq!(headers["x-request-id"], "trace-42.a:b_c");
    assert_eq!(body["request_id"], "trace-42.a:b_c");
    for bad in ["has spaces", &"x".repeat(129), "quote\"d", ""] {
        let (_, headers, body) = send(users.raw().get(&url).header("x-request-id", bad)).await;
        let made = headers["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(made, bad);
        assert!(
            uuid::Uuid::parse_str(&made).is_ok(),
            "a fresh id replaces {bad:?}: {made}"
        );
        assert_eq!(body["request_id"], made.as_str());
    }
    let (_, a, _) = send(users.raw().get(format!("{}/ping", users.base_url))).await;
    let (_, b, _) = send(users.raw().get(format!("{}/ping", users.base_url))).await;
    assert_ne!(
        a["x-request-id"], b["x-request-id"],
        "each request gets its own id"
    );
}

async fn cors_for_allowed_origins_only(backend: Backend) {
    let users = Users::start(backend).await;
    let url = format!("{}/v1/users", users.base_url);
    let preflight = |origin: &str| {
        users
            .raw()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
    };
    let resp = preflight(ORIGIN).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("content-type") && allowed.contains("authorization"));

    let resp = preflight("https://evil.example").send().await.unwrap();
    assert_eq!(resp.status(), 405, "no preflight answer for other origins");
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let resp = users
        .raw()
        .post(&url)
        .json(&serde_json::json!({"username": "ada", "email": "ada@example.com", "password": "long enough pw"}))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    assert!(resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
    let resp = users
        .raw()
        .get(format!("{url}?limit=1"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Errors carry CORS headers too, so a browser app can read the problem (here the
    // 401 that comes before the bad `limit` is looked at).
    let resp = users
        .raw()
        .get(format!("{url}?limit=0"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
}

async fn no_cors_by_default(backend: Backend) {
    let users = Users::start_with(backend, |c| c.cors_allowed_origins.clear()).await;
    let resp = users
        .raw()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/users", users.base_url),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = users
        .raw()
        .get(format!("{}/ping", users.base_url))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

/// Runs SQL directly against the service's database, behind its back.
async fn sabotage(users: &Users, sql: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&users.db.url("users"))
        .await
        .unwrap();
    // Test-only SQL, written in this file.
    conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .unwrap();
}

async fn readyz_is_503_when_the_database_is_not_migrated(backend: Backend) {
    let users = Users::start(backend).await;
    assert_eq!(users.client.readyz().send().await.unwrap().status(), 200);
    sabotage(&users, "DELETE FROM _sqlx_migrations").await;
    let (status, headers, body) = send(users.raw().get(format!("{}/readyz", users.base_url))).await;
    assert_eq!(status, 503);
    assert_problem(status, &headers, &body, "readyz");
    // Why is for the log (under the request id); the caller only learns where to look.
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("migrations") && detail.contains(body["request_id"].as_str().unwrap()),
        "{body}"
    );
    // Liveness does not depend on the database.
    assert_eq!(users.client.healthz().send().await.unwrap().status(), 200);
}

async fn internal_errors_are_500_problems_without_internals(backend: Backend) {
    let users = Users::start(backend).await;
    let (_, admin_http) = users.admin().await;
    sabotage(&users, "DROP TABLE users").await;
    let (status, headers, body) =
        send(admin_http.get(format!("{}/v1/users", users.base_url))).await;
    assert_eq!(status, 500);
    assert_problem(status, &headers, &body, "internal error");
    let text = body.to_string().to_lowercase();
    for internal in ["users", "table", "sql", "relation"] {
        assert!(!text.contains(internal), "{internal:?} leaked: {body}");
    }
}

on_both_databases!(
    every_error_is_a_problem,
    request_ids_are_accepted_or_made,
    cors_for_allowed_origins_only,
    no_cors_by_default,
    readyz_is_503_when_the_database_is_not_migrated,
    internal_errors_are_500_problems_without_internals,
);

/// What a `JsonLines` drain wrote, for the test below.
#[derive(Clone, Default)]
struct Written(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Written {
    /// The "request completed" line of `request_id`, waiting for the log writer.
    async fn completed(&self, request_id: &str) -> Value {
        for _ in 0..200 {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            let found = text
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
                .find(|line| line["msg"] == "request completed" && line["req_id"] == request_id);
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no line for {request_id}");
    }
}

/// Each request's log line says what an operator looks for, whatever the answer: the
/// request (method, URI as sent, request id, client address), its trace, the operation
/// the router found, the status and the time taken, plus the service's own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_logged_with_what_identifies_it() {
    use slog::Drain;
    let db = taproom_tests::TestDb::new(Backend::Sqlite);
    let written = Written::default();
    let drain = taproom_server::runtime::logs::JsonLines::to(Box::new(written.clone())).unwrap();
    let log = slog::Logger::root(drain.fuse(), slog::o!());
    let server = taproom_server::users::start(&db.config(), &Default::default(), &log)
        .await
        .expect("users service starts");
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let cases = [
        ("GET", "/ping", "log-1", 200, Some("ping")),
        (
            "GET",
            "/v1/users/%41b%20c?x=%22y",
            "log-2",
            401,
            Some("get_user"),
        ),
        ("DELETE", "/ping", "log-3", 405, None),
        ("GET", "/no/such/path", "log-4", 404, None),
    ];
    for (method, path, id, status, operation) in cases {
        let sent = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("x-request-id", id)
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), status, "{method} {path}");
        let line = written.completed(id).await;
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["uri"], path, "{line}");
        assert_eq!(line["response_code"], status, "{line}");
        assert_eq!(line["operation_id"].as_str(), operation, "{line}");
        assert_eq!(line["service"], "users", "{line}");
        assert_eq!(
            line["local_addr"],
            server.local_addr().to_string(),
            "{line}"
        );
        assert!(
            line["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{line}"
        );
        assert_eq!(line["trace_id"], trace, "{line}");
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
        assert!(line["latency_us"].as_u64().is_some(), "{line}");
        let ts = line["ts"].as_str().unwrap();
        let ts = chrono::DateTime::parse_from_rfc3339(ts).expect("an RFC 3339 time");
        let age = chrono::Utc::now().signed_duration_since(ts);
        assert!(age.num_seconds().abs() < 60, "the time is now: {line}");
    }
}

// dropshot (patched, see vendor/dropshot/TAPROOM.md) moves a request's headers into
// `rqctx.request` instead of copying them; the hyper request an exclusive extractor is
// given has none. Its own body extractors read them from the context, and `RawRequest`
// hands its handler the whole request. Taproom's services use neither, so they are
// checked here on a bare dropshot server.
mod bare {
    use dropshot::{
        endpoint, ApiDescription, HttpError, HttpResponseOk, RawRequest, RequestContext, TypedBody,
    };
    use serde_json::Value;

    #[endpoint { method = POST, path = "/typed" }]
    async fn typed(
        _rqctx: RequestContext<()>,
        body: TypedBody<Value>,
    ) -> Result<HttpResponseOk<Value>, HttpError> {
        Ok(HttpResponseOk(body.into_inner()))
    }

    #[endpoint { method = POST, path = "/raw" }]
    async fn raw(
        _rqctx: RequestContext<()>,
        raw: RawRequest,
    ) -> Result<HttpResponseOk<Option<String>>, HttpError> {
        let request = raw.into_inner();
        let probe = request.headers().get("x-probe");
        Ok(HttpResponseOk(
            probe.and_then(|v| v.to_str().ok()).map(str::to_string),
        ))
    }

    pub fn api() -> ApiDescription<()> {
        let mut api = ApiDescription::new();
        api.register(typed).unwrap();
        api.register(raw).unwrap();
        api
    }
}

#[tokio::test]
async fn dropshots_own_extractors_see_the_request_headers() {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let config = dropshot::ConfigDropshot {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = dropshot::ServerBuilder::new(bare::api(), (), log)
        .config(config)
        .start()
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();

    let answer = http
        .post(format!("{base}/typed"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        serde_json::json!({"a": 1})
    );

    // A body extractor that could not see the header would take this for JSON.
    let answer = http
        .post(format!("{base}/typed"))
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.contains("unsupported content-type"), "{text}");

    let answer = http
        .post(format!("{base}/raw"))
        .header("x-probe", "seen")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Option<String>>().await.unwrap().as_deref(),
        Some("seen")
    );

    server.close().await.unwrap();
}
