//! DynamoDB and Lambda for the tests: a private moto server (`moto[server]` from PyPI;
//! `MOTO_SERVER` names its `moto_server` when not on PATH), and the tasks service in
//! Lambda mode: `server lambda tasks` under cargo-lambda's runtime emulator
//! (`CARGO_LAMBDA` names its `cargo-lambda` when not on PATH), called through a small
//! stand-in for API Gateway that turns each HTTP request into a payload v1 (REST API) or
//! v2 (HTTP API, function URL) event, invokes the function through the emulator, and
//! turns the function's reply back into the HTTP response.
//!
//! The `server` binary is the one next to the test executable (`cargo test` builds it;
//! with feature `aws`, for Lambda mode) unless `TAPROOM_SERVER_BIN` names another.

use base64::Engine;
use dropshot::{Body, HttpError, RequestContext, UntypedBody};
use serde_json::{json, Map, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// API Gateway's event format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// REST API proxy integration, stage `prod` in front of the path, text bodies.
    V1,
    /// HTTP API / function URL, `$default` stage, cookies apart, base64 bodies.
    V2,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed (and reaped) when dropped, also when a test panics.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port`, or panics saying what `what` is.
fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} not listening on {port} after a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tool(env: &str, default: &str, install: &str) -> Command {
    let program = std::env::var(env).unwrap_or_else(|_| default.to_string());
    let mut command = Command::new(&program);
    command.stdin(Stdio::null());
    if which(&program).is_none() {
        panic!("{program} not found: {install}, or set {env}");
    }
    command
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(program);
    if path.components().count() > 1 {
        return path.exists().then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
}

/// A moto server on a free port of 127.0.0.1, stopped when dropped.
pub struct Moto {
    pub endpoint: String,
    _process: Process,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut child = tool("MOTO_SERVER", "moto_server", "pip install 'moto[server]'")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_listening(port, &mut child, "moto_server");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: Process(child),
        }
    }
}

/// The tasks service as a Lambda function: the emulator, the function's process, and
/// the API Gateway stand-in at `base_url`; all stopped when dropped.
pub struct Function {
    pub base_url: String,
    /// When the function's process was started (its cold start begins).
    pub spawned: Instant,
    _gateway: dropshot::HttpServer<Arc<Gateway>>,
    _function: Process,
    _emulator: Process,
}

/// The function's name in the emulator: with `--only-lambda-apis` it must be a binary
/// of the workspace, whose metadata the emulator reads.
const FUNCTION: &str = "server";

impl Function {
    /// Starts `server lambda tasks` on `database_url`, trusting the users service at
    /// `users_url`, reached through `payload` events.
    pub async fn start(payload: Payload, database_url: &str, users_url: &str) -> Function {
        let port = free_port();
        let mut emulator = tool("CARGO_LAMBDA", "cargo-lambda", "pip install cargo-lambda")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo-lambda starts");
        wait_listening(port, &mut emulator, "cargo lambda watch");
        let emulator = Process(emulator);
        let spawned = Instant::now();
        let function = Process(
            server_binary()
                .args(["lambda", "tasks"])
                .env_clear()
                .env(
                    "AWS_LAMBDA_RUNTIME_API",
                    format!("http://127.0.0.1:{port}/.rt/{FUNCTION}"),
                )
                .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tasks")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
                .env("AWS_REGION", "us-east-1")
                .env("TASKS_DATABASE_URL", database_url)
                .env("USERS_URL", users_url)
                .env(
                    "LOG_LEVEL",
                    std::env::var("TEST_LOG_LEVEL").unwrap_or_else(|_| "critical".into()),
                )
                .env("DATA_DIR", std::env::temp_dir())
                .stdout(Stdio::null())
                .spawn()
                .expect("server lambda tasks starts"),
        );
        let gateway = Arc::new(Gateway {
            payload,
            invoke: format!("http://127.0.0.1:{port}/2015-03-31/functions/{FUNCTION}/invocations"),
            client: reqwest::Client::new(),
        });
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mut api = dropshot::ApiDescription::new();
        api.register(proxy_get).expect("proxy route");
        api.register(proxy_post).expect("proxy route");
        api.register(proxy_put).expect("proxy route");
        api.register(proxy_patch).expect("proxy route");
        api.register(proxy_delete).expect("proxy route");
        let server = dropshot::ServerBuilder::new(api, gateway, log)
            .config(dropshot::ConfigDropshot {
                bind_address: "127.0.0.1:0".parse().unwrap(),
                // The function's own limit is the one under test.
                default_request_body_max_bytes: 16 << 20,
                ..Default::default()
            })
            .start()
            .expect("API Gateway stand-in starts");
        Function {
            base_url: format!("http://{}", server.local_addr()),
            spawned,
            _gateway: server,
            _function: function,
            _emulator: emulator,
        }
    }
}

/// The `server` binary to run as the function.
pub fn server_binary() -> Command {
    let path = std::env::var_os("TAPROOM_SERVER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable");
            // target/debug/deps/<test> -> target/debug/server
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("test executable in target/<profile>/deps")
                .join("server")
        });
    assert!(
        path.exists(),
        "{} missing: `cargo build --features aws --bin server` (or set TAPROOM_SERVER_BIN)",
        path.display()
    );
    Command::new(path)
}

/// The API Gateway stand-in.
pub struct Gateway {
    payload: Payload,
    invoke: String,
    client: reqwest::Client,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AnyPath {
    #[allow(dead_code)]
    path: Vec<String>,
}

macro_rules! proxy_route {
    ($name:ident, $method:ident) => {
        #[dropshot::endpoint { method = $method, path = "/{path:.*}", unpublished = true }]
        async fn $name(
            rqctx: RequestContext<Arc<Gateway>>,
            _path: dropshot::Path<AnyPath>,
            body: UntypedBody,
        ) -> Result<http::Response<Body>, HttpError> {
            let gateway = rqctx.context().clone();
            gateway
                .call(&rqctx.request, body.as_bytes())
                .await
                .map_err(invocation_failed)
        }
    };
}

/// A failed invocation, answered as API Gateway does (502) but with the cause said, so
/// a test that gets it shows why the emulator or the function failed.
fn invocation_failed(e: anyhow::Error) -> HttpError {
    let cause = format!("invoking the function failed: {e:#}");
    eprintln!("API Gateway stand-in: {cause}");
    HttpError {
        status_code: dropshot::ErrorStatusCode::BAD_GATEWAY,
        error_code: None,
        external_message: cause.clone(),
        internal_message: cause,
        headers: None,
    }
}

proxy_route!(proxy_get, GET);
proxy_route!(proxy_post, POST);
proxy_route!(proxy_put, PUT);
proxy_route!(proxy_patch, PATCH);
proxy_route!(proxy_delete, DELETE);

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Gateway {
    async fn call(
        &self,
        request: &dropshot::RequestInfo,
        body: &[u8],
    ) -> anyhow::Result<http::Response<Body>> {
        let event = self.event(request, body);
        let reply: Value = self
            .client
            .post(&self.invoke)
            .json(&event)
            .timeout(Duration::from_secs(30))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        response(&reply)
    }

    /// The event API Gateway would send for this request.
    fn event(&self, request: &dropshot::RequestInfo, body: &[u8]) -> Value {
        let uri = request.uri();
        let path = uri.path();
        let query = uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = url_pairs(query);
        let source_ip = "198.51.100.7";
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        let mut cookies = Vec::new();
        for (name, value) in request.headers() {
            let Ok(value) = value.to_str() else { continue };
            if name == http::header::COOKIE && self.payload == Payload::V2 {
                cookies.extend(value.split("; ").map(str::to_string));
                continue;
            }
            single.insert(name.to_string(), json!(value));
            multi
                .entry(name.to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap()
                .push(json!(value));
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        match self.payload {
            Payload::V1 => {
                let mut query_single = Map::new();
                let mut query_multi: Map<String, Value> = Map::new();
                for (k, v) in &pairs {
                    query_single.insert(k.clone(), json!(v));
                    query_multi
                        .entry(k.clone())
                        .or_insert_with(|| json!([]))
                        .as_array_mut()
                        .unwrap()
                        .push(json!(v));
                }
                let text = String::from_utf8(body.to_vec());
                json!({
                    "resource": "/{proxy+}",
                    "path": path,
                    "httpMethod": request.method().as_str(),
                    "headers": single,
                    "multiValueHeaders": multi,
                    "queryStringParameters": if pairs.is_empty() { Value::Null } else { json!(query_single) },
                    "multiValueQueryStringParameters": if pairs.is_empty() { Value::Null } else { json!(query_multi) },
                    "pathParameters": {"proxy": path.trim_start_matches('/')},
                    "stageVariables": null,
                    "requestContext": {
                        "resourcePath": "/{proxy+}",
                        "httpMethod": request.method().as_str(),
                        "path": format!("/prod{path}"),
                        "stage": "prod",
                        "requestId": request_id,
                        "accountId": "123456789012",
                        "apiId": "taproomtest",
                        "protocol": "HTTP/1.1",
                        "identity": {"sourceIp": source_ip},
                    },
                    "body": if body.is_empty() { Value::Null } else {
                        match &text { Ok(t) => json!(t), Err(_) => json!(b64().encode(body)) }
                    },
                    "isBase64Encoded": !body.is_empty() && text.is_err(),
                })
            }
            Payload::V2 => {
                // HTTP APIs join repeated headers with commas.
                let joined: Map<String, Value> = multi
                    .iter()
                    .map(|(k, v)| {
                        let values: Vec<&str> = v
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect();
                        (k.clone(), json!(values.join(",")))
                    })
                    .collect();
                let mut query_params = Map::new();
                for (k, v) in &pairs {
                    query_params.insert(k.clone(), json!(v));
                }
                json!({
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": path,
                    "rawQueryString": query,
                    "cookies": cookies,
                    "headers": joined,
                    "queryStringParameters": query_params,
                    "requestContext": {
                        "accountId": "123456789012",
                        "apiId": "taproomtest",
                        "domainName": "taproomtest.lambda-url.us-east-1.on.aws",
                        "domainPrefix": "taproomtest",
                        "http": {
                            "method": request.method().as_str(),
                            "path": path,
                            "protocol": "HTTP/1.1",
                            "sourceIp": source_ip,
                            "userAgent": "taproom-tests",
                        },
                        "requestId": request_id,
                        "routeKey": "$default",
                        "stage": "$default",
                        "time": "29/Nov/2026:12:00:00 +0000",
                        "timeEpoch": 0,
                    },
                    // Function URLs send every body base64-encoded unless it is text;
                    // always encoding exercises the decoding.
                    "body": if body.is_empty() { Value::Null } else { json!(b64().encode(body)) },
                    "isBase64Encoded": !body.is_empty(),
                })
            }
        }
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The HTTP response of the function's reply (either payload version).
fn response(reply: &Value) -> anyhow::Result<http::Response<Body>> {
    let status = reply["statusCode"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("reply without statusCode: {reply}"))?;
    let mut builder = http::Response::builder().status(u16::try_from(status)?);
    let mut seen = std::collections::HashSet::new();
    if let Some(multi) = reply["multiValueHeaders"].as_object() {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                seen.insert(name.to_ascii_lowercase());
                builder = builder.header(name, value.as_str().unwrap_or_default());
            }
        }
    }
    if let Some(single) = reply["headers"].as_object() {
        for (name, value) in single {
            if seen.insert(name.to_ascii_lowercase()) {
                builder = builder.header(name, value.as_str().unwrap_or_default());
            }
        }
    }
    for cookie in reply["cookies"].as_array().into_iter().flatten() {
        builder = builder.header(
            http::header::SET_COOKIE,
            cookie.as_str().unwrap_or_default(),
        );
    }
    let text = reply["body"].as_str().unwrap_or_default();
    let body = if reply["isBase64Encoded"].as_bool() == Some(true) {
        b64().decode(text)?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(builder.body(Body::from(body))?)
}
