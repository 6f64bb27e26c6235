//! The real `server` binary: graceful shutdown and start-up configuration errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    // Nothing from the developer's environment or a .env file leaks in.
    for var in [
        "DATABASE_URL",
        "USERS_DATABASE_URL",
        "USERS_PORT",
        "LOG_LEVEL",
        "DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = server()
        .current_dir(dir.path())
        .args(["users", "--users-port", "0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first line says where it listens.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("listen line")
        .to_string();
    let url = format!("http://{addr}");

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
