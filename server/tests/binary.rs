//! The real `server` binary: graceful shutdown and start-up configuration errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::server;

/// Starts `server users` on a free port with its data in `dir`, stdout captured when
/// `capture_stdout`; returns the process and its base URL (from the first stderr line).
fn start_users(
    dir: &std::path::Path,
    extra: &[&str],
    capture_stdout: bool,
) -> (std::process::Child, String) {
    let mut child = server()
        .current_dir(dir)
        .args(["users", "--users-port", "0"])
        .args(extra)
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (_, url) = support::listening(&line).expect("listen line");
    (child, url)
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_users(dir.path(), &["--log-level", "warn"], false);

    // create_user hashes a password with argon2id: slow enough to still be running
    // when the signal arrives.
    let request = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/users"))
                .json(&serde_json::json!({"username": "inflight", "email": "inflight@example.com", "password": "long enough pw"}))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    let response = request
        .await
        .unwrap()
        .expect("the in-flight request gets its answer");
    assert_eq!(response.status(), 201);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // And it no longer accepts connections.
    assert!(reqwest::get(format!("{url}/ping")).await.is_err());
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (vec![("USERS_PORT", "not-a-port")], "--users-port"),
        (vec![("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (vec![("DATABASE_URL", "mysql://x/y")], "DATABASE_URL"),
        (vec![("BIND_ADDRESS", "nowhere")], "--bind-address"),
    ];
    for (env, setting) in cases {
        let out = server()
            .current_dir(dir.path())
            .envs(env.clone())
            .arg("users")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(setting),
            "{env:?}: message does not name {setting}: {stderr}"
        );
    }
}

/// A guessable EVENTS_TOKEN (short, or the deploy files' placeholder) stops the services
/// that use it at start-up, with a message saying why; a long random one is accepted.
#[test]
fn a_weak_events_token_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let placeholder = "change-me-to-a-long-random-secret";
    assert!(
        include_str!("../../deploy/k8s/config.yaml").contains(placeholder),
        "the deploy files' placeholder changed; update this test"
    );
    for (token, says) in [("short-token", "at least 32"), (placeholder, "placeholder")] {
        for service in ["promotions", "orders"] {
            let out = server()
                .current_dir(dir.path())
                .env("EVENTS_TOKEN", token)
                .args([service, "--users-url", "http://127.0.0.1:9"])
                .output()
                .unwrap();
            assert!(!out.status.success(), "{service} started with {token:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("EVENTS_TOKEN") && stderr.contains(says),
                "{service} with {token:?}: {stderr}"
            );
        }
    }
}

#[test]
fn logs_are_one_json_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = start_users(
        dir.path(),
        &["--log-level", "info", "--log-format", "json"],
        true,
    );
    let password = "s3cret-Passw0rd-never-logged";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{url}/v1/users"))
            .basic_auth("someone", Some(password))
            .json(&serde_json::json!({"username": "logme", "email": "logme@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        // A refused request, whose body also carries the password.
        let refused = client
            .post(format!("{url}/v1/users"))
            .json(&serde_json::json!({"username": "x", "email": "bad", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        // A query string is logged as sent, after the path.
        let pinged = client
            .get(format!("{url}/ping?probe=a%20b&n=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(pinged.status(), 200);
    });
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 3, "expected request log lines, got {stdout}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("msg").is_some() && value.get("level").is_some(),
            "{line}"
        );
    }
    let completed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["msg"] == "request completed")
        .collect();
    assert_eq!(completed.len(), 3, "one line per request: {stdout}");
    let targets: Vec<(&str, &str)> = completed
        .iter()
        .map(|v| (v["method"].as_str().unwrap(), v["uri"].as_str().unwrap()))
        .collect();
    assert_eq!(
        targets,
        [
            ("POST", "/v1/users"),
            ("POST", "/v1/users"),
            ("GET", "/ping?probe=a%20b&n=1")
        ],
        "{stdout}"
    );
    for v in &completed {
        assert!(
            v["req_id"].is_string()
                && v["latency_us"].is_number()
                && v["response_code"].is_number(),
            "{v}"
        );
    }
    assert!(
        !stdout.contains(password),
        "the password leaked into the log"
    );
    assert!(
        !stdout.to_ascii_lowercase().contains("authorization"),
        "an Authorization header was logged"
    );
}

#[tokio::test]
async fn admin_create_makes_an_admin_who_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let create = |username: &str, password: &str| {
        server()
            .current_dir(dir.path())
            .env("TAPROOM_ADMIN_PASSWORD", password)
            .args([
                "admin",
                "create",
                "--username",
                username,
                "--email",
                &format!("{username}@example.com"),
            ])
            .output()
            .unwrap()
    };
    let out = create("root", "a strong password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin root"));
    // The same checks as the API: a bad name or short password is refused, and so is a
    // taken name.
    let out = create("no spaces", "short");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("username") && err.contains("password"),
        "{err}"
    );
    assert!(!create("root", "a strong password").status.success());

    let (mut child, url) = start_users(dir.path(), &["--log-level", "warn"], false);
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{url}/v1/auth/token"))
        .basic_auth("root", Some("a strong password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = client
        .get(format!("{url}/v1/users"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "the admin may list users");
    let _ = child.kill();
    let _ = child.wait();
}

/// The README's run command: `server all` starts every service and the gateway in front
/// of them, says where each listens, serves the whole API through the gateway, and stops
/// cleanly on Ctrl-C.
#[tokio::test]
async fn server_all_runs_everything_behind_the_gateway_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut all =
        support::ServerAll::on_free_ports(dir.path(), &[("LOG_LEVEL", "warning")], Stdio::null());
    for line in all.lines.iter().filter(|l| support::listening(l).is_some()) {
        assert!(line.contains("/docs"), "{line}");
    }
    let gw = all.url("gateway").to_string();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{gw}/v1/users"))
        .json(&serde_json::json!({"username": "ada", "email": "ada@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let token: serde_json::Value = http
        .post(format!("{gw}/v1/auth/token"))
        .basic_auth("ada", Some("correct horse"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let order = http
        .post(format!("{gw}/v1/orders"))
        .bearer_auth(token)
        .header("x-request-id", "one-command-1")
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);
    assert_eq!(order.headers()["x-request-id"], "one-command-1");
    assert_eq!(
        http.get(format!("{gw}/v1/beers"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let page = http.get(format!("{gw}/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/gateway/openapi.json"));
    let doc: serde_json::Value = http
        .get(format!("{gw}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/orders/{order_id}/checkout"].is_object());
    let missing = http.get(format!("{gw}/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    // Ctrl-C: every server stops, exit 0.
    let pid = all.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = all.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server all did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `server admin rotate-keys` against the database of a running users service: the
/// service signs with the new key from its next login, without a restart, and publishes
/// both until the old key's tokens have expired.
#[tokio::test]
async fn admin_rotate_keys_reaches_the_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_users(dir.path(), &["--log-level", "warn"], false);
    let client = reqwest::Client::new();
    let kids = || async {
        let jwks: serde_json::Value = client
            .get(format!("{url}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let before = kids().await;
    assert_eq!(before.len(), 1);

    let out = server()
        .current_dir(dir.path())
        .args(["admin", "rotate-keys"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key "))
        .expect("the new key is named")
        .to_string();
    assert!(
        stdout.contains(&format!("retired {}", before[0])),
        "{stdout}"
    );
    assert_eq!(kids().await, vec![new_kid.clone(), before[0].clone()]);

    let body = serde_json::json!({"username": "ann", "email": "ann@example.com", "password": "a user password"});
    client
        .post(format!("{url}/v1/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let token: serde_json::Value = client
        .post(format!("{url}/v1/auth/token"))
        .basic_auth("ann", Some("a user password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid, Some(new_kid));
    child.kill().unwrap();
    child.wait().unwrap();

    // On PostgreSQL without a key-encryption key nothing is done: the message names the
    // settings, before any connection is tried.
    let out = server()
        .current_dir(dir.path())
        .env(
            "USERS_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        )
        .args(["admin", "rotate-keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SIGNING_KEY_FILE") && err.contains("SIGNING_KEY_ENCRYPTION_KEY"),
        "{err}"
    );
}

/// A machine without a working code sandbox still runs the README's `server all`: every
/// other service starts, exercises says it did not and why, and the gateway answers its
/// paths with a 503 problem. Started alone, exercises refuses to start.
#[tokio::test]
async fn server_all_runs_without_a_sandbox_but_exercises_alone_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("LOG_LEVEL", "warning"),
        ("SANDBOX_BWRAP", "/nonexistent/bwrap"),
    ];
    let names: Vec<&str> = taproom_server::SERVICES
        .iter()
        .map(|s| s.name)
        .filter(|name| *name != "exercises")
        .collect();
    let ports: Vec<String> = ["gateway", "exercises"]
        .iter()
        .chain(&names)
        .map(|name| format!("{}_PORT", name.to_uppercase()))
        .collect();
    env.extend(ports.iter().map(|port| (port.as_str(), "0")));
    let mut expected = names.clone();
    expected.push("gateway");
    let all = support::ServerAll::start(dir.path(), &env, &expected);
    let said = all
        .lines
        .iter()
        .find(|l| l.starts_with("exercises") && l.contains("NOT STARTED"))
        .unwrap_or_else(|| panic!("no word about exercises: {:?}", all.lines));
    assert!(said.contains("bubblewrap"), "{said}");
    assert!(!all.urls.contains_key("exercises"));
    let gw = all.url("gateway").to_string();
    let answer = reqwest::get(format!("{gw}/v1/exercises")).await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = answer.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("not running"),
        "{problem}"
    );
    // The others serve as usual.
    let beers = reqwest::get(format!("{gw}/v1/beers")).await.unwrap();
    assert_eq!(beers.status(), 200);
    drop(all);

    let alone = server()
        .current_dir(dir.path())
        .arg("exercises")
        .env("EXERCISES_PORT", "0")
        .env("SANDBOX_BWRAP", "/nonexistent/bwrap")
        .output()
        .unwrap();
    assert!(!alone.status.success());
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(stderr.contains("bubblewrap"), "{stderr}");
}
