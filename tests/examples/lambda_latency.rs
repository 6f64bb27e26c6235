//! Cold start and warm latency of the tasks service in Lambda mode (cargo-lambda's
//! emulator, payload v2 events through the tests' API Gateway stand-in) against the same
//! service as a plain server (`server tasks`), both on DynamoDB (moto), both whole
//! processes of the same binary:
//!
//!   cargo build --features aws --bin server
//!   cargo run -p taproom-tests --features aws --example lambda_latency [rounds]
//!
//! Cold: from starting the process to the first answered `GET /v1/tasks` (for Lambda,
//! the init phase, which starts the service, plus the first invocation). Warm: the
//! sequential latency of the next requests, of `GET /v1/tasks` (a DynamoDB query) and of
//! `GET /ping` (no store: what Lambda mode itself costs). Needs moto_server and
//! cargo-lambda (see tests/src/lambda.rs).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use taproom_tests::lambda::{server_binary, Function, Payload};
use taproom_tests::{Backend, Users};

const WARM: usize = 300;

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("rounds: a number"))
        .unwrap_or(5);
    let users = Users::start(Backend::DynamoDb).await;
    let (_, token) = users.register("bench").await;
    let http = taproom_tests::bearer_client(&token);
    let mut plain_cold = Vec::new();
    let mut lambda_cold = Vec::new();
    let mut plain_warm = Vec::new();
    let mut lambda_warm = Vec::new();
    let mut plain_ping = Vec::new();
    let mut lambda_ping = Vec::new();
    for _ in 0..rounds {
        let url = users.db.config().database_url("tasks").unwrap();

        // The plain server: first answer after the process starts.
        let spawned = Instant::now();
        let mut child = server_binary()
            .arg("tasks")
            .env("TASKS_PORT", "0")
            .env("TASKS_DATABASE_URL", &url)
            .env("USERS_URL", &users.base_url)
            .env("LOG_LEVEL", "critical")
            .env("DATA_DIR", std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server tasks");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("listening line")
            .to_string();
        let base = format!("http://{addr}");
        get(&http, &base).await;
        plain_cold.push(spawned.elapsed());
        plain_warm.extend(warm(&http, &base, "/v1/tasks?limit=5").await);
        plain_ping.extend(warm(&http, &base, "/ping").await);
        let _ = child.kill();
        let _ = child.wait();

        // Lambda mode: the init phase starts the service; the first event waits for it.
        let function = Function::start(Payload::V2, &url, &users.base_url).await;
        get(&http, &function.base_url).await;
        lambda_cold.push(function.spawned.elapsed());
        lambda_warm.extend(warm(&http, &function.base_url, "/v1/tasks?limit=5").await);
        lambda_ping.extend(warm(&http, &function.base_url, "/ping").await);
    }
    println!("tasks service, {rounds} cold starts, {WARM} warm requests of each kind per start");
    println!("{:<28}{:>10}{:>10}{:>10}", "", "p50", "p90", "max");
    for (name, samples) in [
        ("plain server: cold", &mut plain_cold),
        ("Lambda mode: cold", &mut lambda_cold),
        ("plain server: warm tasks", &mut plain_warm),
        ("Lambda mode: warm tasks", &mut lambda_warm),
        ("plain server: warm ping", &mut plain_ping),
        ("Lambda mode: warm ping", &mut lambda_ping),
    ] {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "{name:<28}{:>10}{:>10}{:>10}",
            ms(at(0.5)),
            ms(at(0.9)),
            ms(at(1.0))
        );
    }
}

async fn get(http: &reqwest::Client, base: &str) {
    fetch(http, base, "/v1/tasks?limit=5").await
}

async fn fetch(http: &reqwest::Client, base: &str, path: &str) {
    let resp = http.get(format!("{base}{path}")).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{path}");
}

async fn warm(http: &reqwest::Client, base: &str, path: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let start = Instant::now();
        fetch(http, base, path).await;
        samples.push(start.elapsed());
    }
    samples
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
