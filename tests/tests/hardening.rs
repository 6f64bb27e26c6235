//! Attacks on the front doors and the connections themselves, each performed for real
//! with raw TCP (no client that would normalise or complete the request for us):
//! dot segments through the gateways, slow clients (slowloris), too many connections.

use std::time::Duration;
use taproom_tests::{Backend, Nginx, Shop, Users};
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
    let (tasks, _gateway, gw) = shop.behind_gateway().await;
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

/// nginx from deploy/nginx.conf in front of the shop's services. No tasks service in these
/// tests: nothing here is routed to it, so its upstream is beers.
async fn nginx_in_front_of(shop: &Shop) -> Nginx {
    let addr = |url: &str| vec![host_port(url)];
    Nginx::start(&[
        ("users", addr(&shop.users.base_url)),
        ("beers", addr(&shop.beers_url)),
        ("orders", addr(&shop.orders_url)),
        ("tasks", addr(&shop.beers_url)),
        ("promotions", addr(&shop.promotions_url)),
    ])
    .await
}

#[tokio::test]
async fn nginx_does_not_route_dot_segments_to_internal_routes() {
    let shop = Shop::start(Backend::Sqlite).await;
    let nginx = nginx_in_front_of(&shop).await;
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

    // /metrics is internal: every service serves it, nginx routes it to none.
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
    let direct = raw(&shop.beers_url, &get("/metrics")).await;
    assert_eq!(status(&direct), 200, "{direct}");
    assert!(
        direct.contains("# TYPE http_server_requests_in_flight gauge"),
        "{direct}"
    );
    for path in [
        "/metrics",
        "/v1/beers/../../metrics",
        "/v1/beers/%2e%2e/%2e%2e/metrics",
    ] {
        let answer = raw(&nginx.url, &get(path)).await;
        assert!(
            matches!(status(&answer), 400 | 404) && !answer.contains("http_server_requests"),
            "{path} reached a service's metrics: {answer}"
        );
    }
}

#[tokio::test]
async fn a_slow_client_is_disconnected_and_a_slow_body_gets_408() {
    let users = Users::start_with(Backend::Sqlite, |config| {
        config.limits.header_read_timeout_ms = 300;
        config.limits.body_read_timeout_ms = 300;
    })
    .await;
    let url = users.base_url.clone();

    // Slowloris: half a request head, then nothing.
    let mut slow = TcpStream::connect(host_port(&url)).await.unwrap();
    slow.write_all(b"GET /ping HTTP/1.1\r\nHost: users\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_to_close(&mut slow).await;
    assert!(
        !answer.contains("pong"),
        "a half-sent request was answered: {answer}"
    );

    // A connection that never says anything (not even which HTTP version it speaks).
    let mut silent = TcpStream::connect(host_port(&url)).await.unwrap();
    read_to_close(&mut silent).await;

    // A whole head, then a body that never finishes.
    let mut trickle = TcpStream::connect(host_port(&url)).await.unwrap();
    trickle
        .write_all(
            b"POST /v1/users HTTP/1.1\r\nHost: users\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut trickle).await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    // A client that sends its request promptly is served as ever.
    let answer = raw(
        &url,
        "GET /ping HTTP/1.1\r\nHost: users\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
}

/// Reads one answer to a `/ping` (its whole JSON body) from a kept-alive connection.
async fn read_pong(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with('}') {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// On a kept-alive connection every request head gets the whole header-read timeout from
/// the end of the previous answer, however long the connection has lived; a head that
/// is not finished in time, or no head at all, closes the connection.
#[tokio::test]
async fn each_head_on_a_kept_alive_connection_gets_the_whole_timeout() {
    let timeout = Duration::from_millis(1000);
    let users = Users::start_with(Backend::Sqlite, move |config| {
        config.limits.header_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let url = users.base_url.clone();
    let ping = b"GET /ping HTTP/1.1\r\nHost: users\r\n\r\n";

    let mut idle = TcpStream::connect(host_port(&url)).await.unwrap();
    idle.write_all(ping).await.unwrap();
    let mut kept = TcpStream::connect(host_port(&url)).await.unwrap();
    kept.write_all(ping).await.unwrap();
    assert!(read_pong(&mut idle).await.contains("pong"));
    assert!(read_pong(&mut kept).await.contains("pong"));
    // Each next request comes after 60% of the timeout: three of them span more than one
    // timeout, so a deadline that were not moved along with the requests would cut this
    // connection off.
    for _ in 0..3 {
        tokio::time::sleep(timeout * 6 / 10).await;
        kept.write_all(ping).await.unwrap();
        assert!(read_pong(&mut kept).await.contains("pong"));
    }
    // Half a head, then nothing: closed, not answered.
    kept.write_all(b"GET /ping HTTP/1.1\r\nHost: users\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept).await;
    assert!(
        !answer.contains("pong"),
        "a half-sent head was answered: {answer}"
    );
    // Nothing at all after an answer: closed too.
    assert_eq!(read_to_close(&mut idle).await, "");
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_and_freed_slots_serve_again() {
    let users = Users::start_with(Backend::Sqlite, |config| {
        config.limits.max_connections = 2;
        // The held connections must outlive the test's steps.
        config.limits.header_read_timeout_ms = 120_000;
    })
    .await;
    let config = users.db.config();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let tasks = taproom_server::tasks::start(&config, &users.peers(), &log)
        .await
        .unwrap();
    let tasks_url = format!("http://{}", tasks.local_addr());
    let url = users.base_url.clone();
    let ping = "GET /ping HTTP/1.1\r\nHost: users\r\nConnection: close\r\n\r\n";

    // Two slow clients take both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(host_port(&url)).await.unwrap();
        stream.write_all(b"GET /ping HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    // The next connection is refused with a problem, not queued behind them.
    let answer = raw(&url, ping).await;
    assert_eq!(status(&answer), 503, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("application/problem+json") && lower.contains("retry-after"),
        "{answer}"
    );
    // Another service of the same process is not affected.
    let answer = raw(&tasks_url, ping).await;
    assert_eq!(status(&answer), 200, "{answer}");

    // A slot freed is a slot served again.
    held.pop();
    taproom_tests::eventually(10, "users answers /ping once a slot is free", || {
        let url = url.clone();
        async move { status(&raw(&url, ping).await) == 200 }
    })
    .await;
    drop(held);
    drop(tasks);
}

/// nginx limits sign-ups and logins per client address too (`limit_req`), answering its
/// own 429 problem; the services' limits are lifted in tests, so every 429 here is
/// nginx's.
#[tokio::test]
async fn nginx_rate_limits_credential_endpoints() {
    let shop = Shop::start(Backend::Sqlite).await;
    let nginx = nginx_in_front_of(&shop).await;
    let http = reqwest::Client::new();
    let logins = (0..40).map(|i| {
        let http = http.clone();
        let url = format!("{}/v1/auth/token", nginx.url);
        async move {
            let resp = http
                .post(url)
                .json(&serde_json::json!({"username": format!("nobody{i}"), "password": "guess"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let problem: serde_json::Value = resp.json().await.unwrap();
            (status, retry_after, problem)
        }
    });
    let answers = futures::future::join_all(logins).await;
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(
        !limited.is_empty() && limited.len() < answers.len(),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (_, retry_after, problem) in limited {
        assert!(retry_after);
        assert_eq!(problem["status"], 429, "{problem}");
    }
    // Everything else reached users and was checked.
    assert!(answers.iter().all(|(s, _, _)| matches!(s, 401 | 429)));
    // Reads are not limited.
    for _ in 0..30 {
        let resp = http
            .get(format!("{}/v1/beers", nginx.url))
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), 429);
    }
}

/// Through the built-in gateway a client cannot pick its address with X-Forwarded-For:
/// the gateway appends the address it saw, and the services believe only the right-most
/// untrusted hop. The client connects from 127.0.0.2, which is not a trusted proxy (the
/// tests trust 127.0.0.1 only), so it stands for a client on another host.
#[tokio::test]
async fn the_built_in_gateway_does_not_let_clients_choose_their_address() {
    let shop = Shop::start(Backend::Sqlite).await;
    shop.users.register("ada").await;
    let config = shop.users.db.config();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let upstreams = vec![
        ("users", shop.users.base_url.clone()),
        ("beers", shop.beers_url.clone()),
        ("promotions", shop.promotions_url.clone()),
        ("orders", shop.orders_url.clone()),
        ("tasks", shop.beers_url.clone()),
    ];
    let gateway = taproom_server::gateway::start(&config, upstreams, &log).unwrap();
    let gw = format!("http://{}", gateway.local_addr());
    let client = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let login = |spoofed: String, password: &'static str| {
        let client = client.clone();
        let url = format!("{gw}/v1/auth/token");
        async move {
            client
                .post(url)
                .header("x-forwarded-for", spoofed)
                .json(&serde_json::json!({"username": "ada", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Five wrong guesses, each claiming another address ...
    for i in 0..5 {
        assert_eq!(login(format!("198.51.100.{i}"), "wrong").await, 401);
    }
    // ... all counted against the one the gateway saw: it is throttled now, whatever it
    // claims to be.
    assert_eq!(login("198.51.100.77".into(), "wrong").await, 429);
}

/// A client that hangs up while its write is being handled does not cancel the write
/// halfway: the sign-up (a deliberately slow password hash, then the insert) runs to its
/// end, and the account exists afterwards. Reads may be cancelled; writes never are.
#[tokio::test]
async fn a_write_whose_client_hangs_up_still_completes() {
    let users = Users::start(Backend::Sqlite).await;
    let (_, admin) = users.admin().await;
    let body = r#"{"username":"hangup","email":"hangup@example.com","password":"a user password"}"#;
    let mut stream = TcpStream::connect(host_port(&users.base_url))
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/users HTTP/1.1\r\nHost: users\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Gone before any answer could be ready: the password is still being hashed.
    drop(stream);

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed: serde_json::Value = admin
            .get(format!("{}/v1/users?limit=100", users.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["username"].as_str())
            .collect();
        if names.contains(&"hangup") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sign-up was cancelled with its connection: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it is whole: the account can log in.
    users.login("hangup", "a user password").await;
}

/// The server's end of the TCP connection from local port `client_port` to `server_port`
/// in this process (services run in-process here): whether Nagle's algorithm is off on
/// it (`TCP_NODELAY`).
fn server_side_nodelay(server_port: u16, client_port: u16) -> Option<bool> {
    use std::os::fd::FromRawFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only looked at, never closed (`ManuallyDrop`); on
        // one that is not a TCP socket the address look-ups fail. Other tests of this
        // process may close and reuse descriptors meanwhile: the ports decide which
        // socket this is, whatever it was when listed.
        let socket = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        let ports = (socket.local_addr(), socket.peer_addr());
        if let (Ok(local), Ok(peer)) = ports {
            if local.port() == server_port && peer.port() == client_port {
                return socket.nodelay().ok();
            }
        }
    }
    None
}

/// Every accepted connection has Nagle's algorithm off: an answer that spans several TCP
/// segments would otherwise hold back its last, partial one until the client
/// acknowledges the ones before (a round trip, or the client's delayed-ACK timer, on
/// every such answer).
#[tokio::test]
async fn accepted_connections_send_without_waiting_for_acks() {
    let users = Users::start(Backend::Sqlite).await;
    let mut stream = TcpStream::connect(host_port(&users.base_url))
        .await
        .unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: users\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&answer[..n])), 200);
    let server_port = stream.peer_addr().unwrap().port();
    let client_port = stream.local_addr().unwrap().port();
    let nodelay = server_side_nodelay(server_port, client_port)
        .expect("the server's end of the connection, in this process");
    assert!(nodelay, "TCP_NODELAY is off on the accepted connection");
}
