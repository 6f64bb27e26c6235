//! Attacks on the front doors, each performed for real with raw TCP (no client that
//! would normalise or complete the request for us): dot segments through the gateways.

use std::time::Duration;
use taproom_tests::{Backend, Nginx, Shop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on how long a test waits for a server to act (a liveness bound, so that a
/// missing defence fails the test instead of hanging it; nothing is timed against it).
const PATIENCE: Duration = Duration::from_secs(30);

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Sends `request` as written and returns everything the server answers until it closes.
async fn raw(url: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(host_port(url)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await
}

/// Reads until the server closes the connection (a reset counts as closed).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(_) => panic!(
            "the server kept the connection open; it sent: {}",
            String::from_utf8_lossy(&answer)
        ),
    }
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// Paths that name promotions' `receive_event` (`POST /v1/events`, between services only,
/// not routed by either gateway) once a client resolves their dot segments.
const SMUGGLED: &[&str] = &[
    "/v1/promotions/%2e%2e/events",
    "/v1/promotions/%2E%2E/events",
    "/v1/promotions/%2E./events",
    "/v1/promotions/.%2e/events",
    "/v1/promotions/../events",
    "/v1/promotions/x/%2e%2e/%2e%2e/events",
    "/v1/promotions%2f..%2fevents",
    "/v1/promotions/..%2fevents",
];

fn post(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
}

/// What reaching `receive_event` looks like: its own 401, asking for the events token.
async fn reaching_receive_event_looks_like(promotions_url: &str) -> String {
    let answer = raw(promotions_url, &post("/v1/events")).await;
    assert_eq!(status(&answer), 401, "{answer}");
    answer
}

#[tokio::test]
async fn the_built_in_gateway_refuses_dot_segments_before_routing() {
    let shop = Shop::start(Backend::Sqlite).await;
    let config = shop.users.db.config();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let tasks = taproom_server::tasks::start(&config, &shop.users.peers(), &log)
        .await
        .unwrap();
    let upstreams = vec![
        ("users", shop.users.base_url.clone()),
        ("beers", shop.beers_url.clone()),
        ("promotions", shop.promotions_url.clone()),
        ("orders", shop.orders_url.clone()),
        ("tasks", format!("http://{}", tasks.local_addr())),
    ];
    let gateway = taproom_server::gateway::start(&config, upstreams, &log).unwrap();
    let gw = format!("http://{}", gateway.local_addr());
    reaching_receive_event_looks_like(&shop.promotions_url).await;

    for path in SMUGGLED {
        let answer = raw(&gw, &post(path)).await;
        // A literal `..` is refused by dropshot's router already; the encoded spellings
        // reach the gateway's own check.
        assert_eq!(status(&answer), 400, "{path}: {answer}");
        assert!(
            answer.contains("application/problem+json")
                && (path.contains("/../") || answer.contains("dot segment")),
            "{path}: {answer}"
        );
    }
    // The front door still works for what it routes.
    let answer = raw(
        &gw,
        "GET /v1/beers HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    drop(tasks);
}

#[tokio::test]
async fn nginx_does_not_route_dot_segments_to_internal_routes() {
    let shop = Shop::start(Backend::Sqlite).await;
    let addr = |url: &str| vec![host_port(url)];
    let nginx = Nginx::start(&[
        ("users", addr(&shop.users.base_url)),
        ("beers", addr(&shop.beers_url)),
        ("orders", addr(&shop.orders_url)),
        // No tasks service in this test: nothing here is routed to it.
        ("tasks", addr(&shop.beers_url)),
        ("promotions", addr(&shop.promotions_url)),
    ])
    .await;
    reaching_receive_event_looks_like(&shop.promotions_url).await;

    for path in SMUGGLED {
        let answer = raw(&nginx.url, &post(path)).await;
        // nginx resolves the dot segments itself and routes what they stand for
        // (`/v1/events`, which it does not serve: 404), or refuses the path (400).
        assert!(
            matches!(status(&answer), 400 | 404),
            "{path} reached a service: {answer}"
        );
    }
}
