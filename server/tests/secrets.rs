//! Secrets never reach the output: database and NATS passwords in URLs that fail, the
//! URL settings `--help` shows, and the reason `/readyz` gives. Each test runs the real
//! `server` binary with a secret in its settings and searches everything it printed.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::server;

const SECRET: &str = "Sup3r-Secret-7d1f";

/// Everything a run of `server <args>` with `env` printed (stdout and stderr), and
/// whether it succeeded.
fn run(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = server()
        .current_dir(dir.path())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("LOG_LEVEL", "debug")
        .env(
            "EVENTS_TOKEN",
            "a long enough events token for the secrets tests",
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn database_passwords_are_not_printed_when_connecting_fails() {
    // Port 1: nothing listens, so each start fails while connecting.
    let cases = [
        (
            "USERS_DATABASE_URL",
            format!("postgres://postgres:{SECRET}@127.0.0.1:1/shop"),
        ),
        (
            "USERS_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:1/shop?password={SECRET}&sslmode=disable"),
        ),
        (
            "USERS_DATABASE_URL",
            format!("postgres://postgres:{SECRET}@127.0.0.1:notaport/shop"),
        ),
        (
            "DATABASE_URL",
            format!("postgres://postgres:{SECRET}@127.0.0.1:1/shop"),
        ),
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:1/shop?sslpassword={SECRET}"),
        ),
    ];
    for (name, url) in cases {
        let (ok, out) = run(&["users", "--users-port", "0"], &[(name, url.clone())]);
        assert!(!ok, "{name}={url} started");
        assert!(out.contains("error"), "{name}: no error message: {out}");
        assert!(!out.contains(SECRET), "{name}={url} leaked: {out}");
    }
}

#[test]
fn nats_credentials_are_not_printed_when_connecting_fails() {
    for url in [
        format!("nats://taproom:{SECRET}@127.0.0.1:1"),
        format!("nats://{SECRET}@127.0.0.1:1"),
    ] {
        let (ok, out) = run(
            &["orders", "--orders-port", "0"],
            &[("NATS_URL", url.clone())],
        );
        assert!(!ok, "orders started with an unreachable NATS_URL");
        assert!(out.contains("NATS_URL"), "no error naming NATS_URL: {out}");
        assert!(!out.contains(SECRET), "{url} leaked: {out}");
    }
}

#[test]
fn the_retrying_event_consumer_does_not_log_nats_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = server()
        .current_dir(dir.path())
        .args(["promotions", "--promotions-port", "0"])
        .env("NATS_URL", format!("nats://taproom:{SECRET}@127.0.0.1:1"))
        .env(
            "EVENTS_TOKEN",
            "a long enough events token for the secrets tests",
        )
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !seen.contains("reconnecting") && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => seen.push_str(&format!("{line}\n")),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("reconnecting"), "no retry logged: {seen}");
    assert!(!seen.contains(SECRET), "the NATS password leaked: {seen}");
}

#[test]
fn help_does_not_show_url_settings_from_the_environment() {
    let env = [
        ("DATABASE_URL", format!("postgres://u:{SECRET}@db/shop")),
        (
            "USERS_DATABASE_URL",
            format!("postgres://u:{SECRET}@db/users"),
        ),
        ("NATS_URL", format!("nats://u:{SECRET}@nats:4222")),
        ("USERS_URL", format!("http://u:{SECRET}@users:5001")),
        ("EVENTS_TOKEN", SECRET.to_string()),
    ];
    for args in [&["--help"][..], &["users", "--help"][..]] {
        let out = server()
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("DATABASE_URL") && text.contains("NATS_URL"),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{args:?} shows a secret: {text}");
    }
}

#[tokio::test]
async fn readyz_tells_the_log_why_and_the_caller_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = server()
        .current_dir(dir.path())
        .args(["tasks", "--tasks-port", "0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (_, url) = support::listening(&line).expect("listen line");

    // Break the database under the running service.
    let db = format!("sqlite://{}/data/tasks.db", dir.path().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&mut conn)
        .await
        .unwrap();

    let response = reqwest::Client::new()
        .get(format!("{url}/readyz"))
        .header("x-request-id", "readyz-probe-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.text().await.unwrap();
    for internal in ["_sqlx_migrations", "no such table", "database", "sqlite"] {
        assert!(
            !body.to_ascii_lowercase().contains(internal),
            "{internal:?} leaked: {body}"
        );
    }
    assert!(body.contains("readyz-probe-7"), "{body}");

    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut log = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    let reason = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == "not ready" && v["req_id"] == "readyz-probe-7")
        .unwrap_or_else(|| panic!("no 'not ready' line for the request: {log}"));
    assert!(
        reason["reason"]
            .as_str()
            .is_some_and(|r| r.contains("_sqlx_migrations")),
        "{reason}"
    );
}
