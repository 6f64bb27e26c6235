//! Real `server <service>` processes, each started on its own, against one PostgreSQL
//! (`TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test) with databases
//! of their own, `taproom_fleet_<id>_<service>`, dropped with the fleet.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The running processes of one test, killed when dropped.
pub struct Fleet {
    pub children: Vec<(String, Child)>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    db: String,
}

impl Fleet {
    pub fn new() -> Fleet {
        let db = format!("taproom_fleet_{}", Uuid::new_v4().simple());
        let mut url = reqwest::Url::parse(&test_database_url()).unwrap();
        url.set_path(&format!("/{db}"));
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("DATABASE_URL".into(), url.to_string()),
            ("DATA_DIR".into(), dir.path().display().to_string()),
            (
                "EVENTS_TOKEN".into(),
                "fleet test events token, 32 bytes or more".into(),
            ),
            // The users service on PostgreSQL seals its signing key under this.
            (
                "SIGNING_KEY_ENCRYPTION_KEY".into(),
                "c2NhbGUgdGVzdCBrZXktZW5jcnlwdGlvbiBrZXkgMzI=".into(),
            ),
            ("LOG_LEVEL".into(), "warning".into()),
            ("SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
        ];
        Fleet {
            children: Vec::new(),
            env,
            dir,
            db,
        }
    }

    /// The `server` binary with the fleet's settings and nothing from the caller's.
    pub fn command(&self) -> Command {
        let mut cmd = super::server();
        cmd.current_dir(self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The URL of `service`'s database.
    pub fn database_url(&self, service: &str) -> String {
        let mut url = reqwest::Url::parse(&test_database_url()).unwrap();
        url.set_path(&format!("/{}_{service}", self.db));
        url.to_string()
    }

    /// Makes an admin account, as an operator would before the first start.
    pub fn create_admin(&self, username: &str, password: &str) {
        let created = self
            .command()
            .args(["admin", "create", "--username", username])
            .args(["--email", &format!("{username}@example.com")])
            .env("TAPROOM_ADMIN_PASSWORD", password)
            .output()
            .unwrap();
        assert!(created.status.success(), "{created:?}");
    }

    /// Starts `server <service>` on a free port; its base URL.
    pub fn start(&mut self, service: &str, extra_env: &[(&str, &str)]) -> String {
        let port_var = format!("{}_PORT", service.to_uppercase());
        let mut child = self
            .command()
            .arg(service)
            .env(port_var, "0")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("{service} did not start: {line}"))
            .to_string();
        // Keep reading, so that the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                eprintln!("[{line}]");
            }
        });
        self.children.push((service.to_string(), child));
        format!("http://{addr}")
    }

    /// The index of the first process running `service`.
    pub fn index(&self, service: &str) -> usize {
        self.children
            .iter()
            .position(|(s, _)| s == service)
            .unwrap_or_else(|| panic!("no {service} process"))
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the `index`-th process, then its exit
    /// status (after draining, for TERM).
    pub fn signal(&mut self, index: usize, signal: &str) -> std::process::ExitStatus {
        let (_, child) = &mut self.children[index];
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        child.wait().unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let db = self.db.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::PgConnection::connect(&test_database_url())
                    .await
                    .ok()?;
                for service in taproom_server::SERVICES {
                    let sql = format!(
                        "DROP DATABASE IF EXISTS \"{db}_{}\" WITH (FORCE)",
                        service.name
                    );
                    let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// Waits until the service at `url` answers `readyz`.
pub async fn ready(url: &str) {
    let client = taproom_client::users::Client::new(url, Default::default());
    for _ in 0..200 {
        if client.readyz().send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

/// An HTTP client that sends `token` as the bearer.
pub fn bearer(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// POSTs `body` as JSON to `url` (with `client`'s credentials); the JSON answer, which
/// must have `status`.
async fn post(
    client: &reqwest::Client,
    url: String,
    body: serde_json::Value,
    status: u16,
) -> serde_json::Value {
    let resp = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), status, "POST {url}");
    resp.json().await.unwrap()
}

/// Logs `username` in at the users service (or a gateway) at `base`; the access token.
pub async fn login(base: &str, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password});
    let answer = post(
        &reqwest::Client::new(),
        format!("{base}/v1/auth/token"),
        body,
        200,
    )
    .await;
    answer["access_token"].as_str().unwrap().to_string()
}

/// Registers `username` (email `<username>@example.com`); the account's id.
pub async fn register(base: &str, username: &str, password: &str) -> Uuid {
    let body = serde_json::json!({"username": username, "email": format!("{username}@example.com"), "password": password});
    let answer = post(
        &reqwest::Client::new(),
        format!("{base}/v1/users"),
        body,
        201,
    )
    .await;
    answer["id"].as_str().unwrap().parse().unwrap()
}

/// Adds a beer to the catalogue at `base` as `admin`; its id.
pub async fn add_beer(base: &str, admin: &str, sku: &str, price: &str) -> Uuid {
    let body = serde_json::json!({"sku": sku, "name": format!("Beer {sku}"), "price": price});
    let answer = post(&bearer(admin), format!("{base}/v1/beers"), body, 201).await;
    answer["id"].as_str().unwrap().parse().unwrap()
}
