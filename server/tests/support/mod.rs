//! Helpers for the tests that run the real `server` binary as a process: a command with
//! nothing from the developer's environment, the start-up lines that say where each
//! service listens, and `server all` held by a guard that kills it when dropped (also
//! when a test panics).

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

pub mod fleet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings a test must not inherit from the developer's shell (each test sets the ones
/// it needs); each service's own come from the service list.
const INHERITED_SETTINGS: &[&str] = &[
    "DATA_DIR",
    "DATABASE_URL",
    "BIND_ADDRESS",
    "GATEWAY_PORT",
    "GATEWAY",
    "EVENTS_TOKEN",
    "SIGNING_KEY_FILE",
    "SIGNING_KEY_ENCRYPTION_KEY",
    "NATS_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The `server` binary, with none of its settings taken from the environment.
pub fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    for var in INHERITED_SETTINGS {
        cmd.env_remove(var);
    }
    for def in taproom_server::SERVICES {
        let prefix = def.env_prefix();
        for suffix in ["PORT", "DATABASE_URL", "URL"] {
            cmd.env_remove(format!("{prefix}_{suffix}"));
        }
    }
    cmd
}

/// `(name, base URL)` from a start-up line `<name> listening on http://ADDR  docs: …`.
pub fn listening(line: &str) -> Option<(String, String)> {
    let (name, rest) = line.split_once(" listening on http://")?;
    let addr = rest.split_whitespace().next()?;
    Some((name.trim().to_string(), format!("http://{addr}")))
}

/// A running `server all`, killed when dropped.
pub struct ServerAll {
    pub child: Child,
    /// Base URL of each server by name (`users`, …, `gateway` when it runs).
    pub urls: BTreeMap<String, String>,
    /// The start-up lines as printed.
    pub lines: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl ServerAll {
    /// `server all` in `dir` with every service and the gateway on a free port, `env`
    /// added, its log lines (stdout) going to `stdout`.
    pub fn on_free_ports(dir: &Path, env: &[(&str, &str)], stdout: Stdio) -> ServerAll {
        let names: Vec<&str> = taproom_server::SERVICES.iter().map(|s| s.name).collect();
        let ports: Vec<String> = ["gateway"]
            .iter()
            .chain(&names)
            .map(|name| format!("{}_PORT", name.to_uppercase()))
            .collect();
        let mut all_env: Vec<(&str, &str)> = ports.iter().map(|p| (p.as_str(), "0")).collect();
        all_env.extend_from_slice(env);
        let mut expected = names;
        expected.push("gateway");
        Self::start_logging(dir, &all_env, &expected, stdout)
    }

    /// Runs `server all` in `dir` with `env` (ports and the rest as the caller wants them)
    /// and waits until each of `expected` has printed where it listens.
    pub fn start(dir: &Path, env: &[(&str, &str)], expected: &[&str]) -> ServerAll {
        Self::start_logging(dir, env, expected, Stdio::null())
    }

    /// [`ServerAll::start`] with the services' log lines (stdout) going to `stdout`.
    pub fn start_logging(
        dir: &Path,
        env: &[(&str, &str)],
        expected: &[&str],
        stdout: Stdio,
    ) -> ServerAll {
        let mut child = server()
            .current_dir(dir)
            .arg("all")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning server all");
        // A thread keeps reading stderr, so that the server never blocks on a full pipe;
        // the lines also go to this test for the start-up and to `stderr()` for failures.
        let (tx, rx) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let kept = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut all = ServerAll {
            child,
            urls: BTreeMap::new(),
            lines: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !expected.iter().all(|name| all.urls.contains_key(*name)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, url)) = listening(&line) {
                        all.urls.insert(name, url);
                    }
                    all.lines.push(line);
                }
                Err(_) => panic!(
                    "server all did not say where {expected:?} listen; stderr:\n{}",
                    all.stderr()
                ),
            }
        }
        all
    }

    /// The base URL of `name`.
    pub fn url(&self, name: &str) -> &str {
        self.urls
            .get(name)
            .unwrap_or_else(|| panic!("no start-up line for {name}: {:?}", self.lines))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for ServerAll {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An access token for `user` (HTTP Basic login at `base`, a service or the gateway).
pub async fn token(base: &str, user: &str, password: &str) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/auth/token"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("login request")
        .json()
        .await
        .expect("login answer");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{user} not logged in: {answer}"))
        .to_string()
}
