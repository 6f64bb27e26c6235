//! `cargo xtask bench` runs this (release build): it starts the users and tasks services
//! and the framework-free baseline as separate processes on 127.0.0.1, seeds them, drives
//! load at them from this process, and writes `report.md` and `report.csv`.
//!
//!   bench --server PATH --baseline PATH --out DIR [--sqlite] [--duration SECS] [--connections N]
//!         [--rounds N] [--only telemetry|baseline] [--operation NAME]
//!
//! Two servers compared (baseline and tasks; telemetry off and on) are measured in
//! `--rounds` rounds of a, b, b, a, and the report gives each round's range of ratios.
//!
//! PostgreSQL from BENCH_DATABASE_URL (else TEST_DATABASE_URL, else
//! postgres://postgres@127.0.0.1:5432/test); the run creates and drops its own databases.

mod front;
mod load;

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use load::{Case, Stats};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    server: String,
    baseline: String,
    out: std::path::PathBuf,
    sqlite: bool,
    duration: Duration,
    connections: usize,
    /// Rounds of a, b, b, a for each comparison of two servers.
    rounds: usize,
    /// One comparison alone (`--only telemetry|baseline`), for repeating it quickly.
    only: Only,
    /// One operation alone (`--operation ping`), for repeating it quickly.
    operation: Option<String>,
}

#[derive(PartialEq)]
enum Only {
    All,
    /// Telemetry off against on.
    Telemetry,
    /// The three operations against the baseline.
    Baseline,
}

fn args() -> Result<Args> {
    let mut a = Args {
        server: String::new(),
        baseline: String::new(),
        out: "target/bench".into(),
        sqlite: false,
        duration: Duration::from_secs(5),
        connections: 64,
        rounds: 1,
        only: Only::All,
        operation: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => a.server = value()?,
            "--baseline" => a.baseline = value()?,
            "--out" => a.out = value()?.into(),
            "--sqlite" => a.sqlite = true,
            "--duration" => a.duration = Duration::from_secs(value()?.parse()?),
            "--connections" => a.connections = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse::<usize>()?.max(1),
            "--operation" => a.operation = Some(value()?),
            "--only" => match value()?.as_str() {
                "telemetry" => a.only = Only::Telemetry,
                "baseline" => a.only = Only::Baseline,
                other => anyhow::bail!("--only {other}: `telemetry` or `baseline`"),
            },
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(
        !a.server.is_empty() && !a.baseline.is_empty(),
        "--server and --baseline are required"
    );
    // The full report's other tables (front doors, connection counts) need every case.
    anyhow::ensure!(
        a.operation.is_none() || a.only != Only::All,
        "--operation needs --only telemetry or --only baseline"
    );
    Ok(a)
}

/// A process of the run, killed when dropped.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` and waits for its "listening on http://ADDR" line on stderr.
fn spawn(mut cmd: Command) -> Result<Proc> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    stderr.read_line(&mut line)?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .with_context(|| format!("no listening line: {line:?}"))?
        .to_string();
    // Keep draining, so a chatty process never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    Ok(Proc {
        child,
        url: format!("http://{addr}"),
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Databases {
    /// Environment for the services (DATABASE_URL or DATA_DIR).
    env: Vec<(String, String)>,
    tasks_url: String,
    pg: Option<(String, String)>,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A temporary directory removed on drop (std only).
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> std::io::Result<Dir> {
            let p = std::env::temp_dir()
                .join(format!("taproom-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// create_user measures password hashing under load, not the per-address rate limit or
/// the bounded hashing queue (503 when full), which would refuse most of the load
/// generator's sign-ups.
const UNLIMITED_CREDENTIALS: (&str, &str) = ("CREDENTIALS_RATE_PER_MINUTE", "1000000000");
const UNLIMITED_BURST: (&str, &str) = ("CREDENTIALS_BURST", "1000000000");
const HASH_QUEUE: (&str, &str) = ("PASSWORD_HASH_QUEUE", "1024");

fn databases(sqlite: bool) -> Result<Databases> {
    let dir = tempfile_dir::Dir::new()?;
    let data_dir = dir.0.display().to_string();
    if sqlite {
        return Ok(Databases {
            env: vec![
                ("DATA_DIR".into(), data_dir.clone()),
                (
                    UNLIMITED_CREDENTIALS.0.into(),
                    UNLIMITED_CREDENTIALS.1.into(),
                ),
                (UNLIMITED_BURST.0.into(), UNLIMITED_BURST.1.into()),
                (HASH_QUEUE.0.into(), HASH_QUEUE.1.into()),
            ],
            tasks_url: format!("sqlite://{data_dir}/tasks.db?mode=rwc"),
            pg: None,
            _dir: dir,
        });
    }
    let base = std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!(
        "taproom_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let with_db = |db: &str| -> Result<String> {
        let mut url: reqwest::Url = base.parse()?;
        url.set_path(&format!("/{db}"));
        Ok(url.to_string())
    };
    Ok(Databases {
        env: vec![
            ("DATABASE_URL".into(), with_db(&name)?),
            // Users on PostgreSQL seals its signing key under a key-encryption key.
            (
                "SIGNING_KEY_ENCRYPTION_KEY".into(),
                "YmVuY2ggcnVuIGtleS1lbmNyeXB0aW9uIGtleSAzMmI=".into(),
            ),
            ("DATA_DIR".into(), data_dir),
            (
                UNLIMITED_CREDENTIALS.0.into(),
                UNLIMITED_CREDENTIALS.1.into(),
            ),
            (UNLIMITED_BURST.0.into(), UNLIMITED_BURST.1.into()),
            (HASH_QUEUE.0.into(), HASH_QUEUE.1.into()),
        ],
        tasks_url: with_db(&format!("{name}_tasks"))?,
        pg: Some((base, name)),
        _dir: dir,
    })
}

async fn drop_databases(pg: &Option<(String, String)>) {
    let Some((base, name)) = pg else { return };
    let Ok(pool) = sqlx::AnyPool::connect(base).await else {
        return;
    };
    for service in front::service_names().unwrap_or_default() {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}_{service}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
    }
}

/// `server <subcommand>` with the run's databases, logging as in production.
fn command(args: &Args, dbs: &Databases, subcommand: &str) -> Command {
    let mut cmd = Command::new(&args.server);
    cmd.arg(subcommand)
        .env("LOG_LEVEL", "info")
        .env("LOG_FORMAT", "json");
    for (k, v) in &dbs.env {
        cmd.env(k, v);
    }
    cmd
}

fn server(args: &Args, dbs: &Databases, service: &str, port: u16) -> Command {
    let mut cmd = command(args, dbs, service);
    cmd.env(format!("{}_PORT", service.to_uppercase()), port.to_string());
    cmd
}

async fn ready(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status() == 200 {
                return Ok(start.elapsed());
            }
        }
        anyhow::ensure!(start.elapsed() < timeout, "{url} not ready in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

fn header(name: &'static str, value: &str) -> Result<(http::HeaderName, http::HeaderValue)> {
    Ok((http::HeaderName::from_static(name), value.parse()?))
}

/// Registers and logs in `name`; (user id, token).
async fn user(http: &reqwest::Client, users: &str, name: &str) -> Result<(String, String)> {
    let created: serde_json::Value = http
        .post(format!("{users}/v1/users"))
        .json(&serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": "bench password"}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().context("user created")?.to_string();
    let token: serde_json::Value = http
        .post(format!("{users}/v1/auth/token"))
        .json(&serde_json::json!({"username": name, "password": "bench password"}))
        .send()
        .await?
        .json()
        .await?;
    Ok((
        id,
        token["access_token"].as_str().context("token")?.to_string(),
    ))
}

/// Adds tasks `from..=to` of `owner` straight into the tasks database, with ids that sort
/// by number (valid UUIDs).
async fn seed(tasks_db: &str, sqlite: bool, owner: &str, from: i64, to: i64) -> Result<()> {
    let pool = sqlx::AnyPool::connect(tasks_db).await?;
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let sql = if sqlite {
        "WITH RECURSIVE s(n) AS (SELECT $3 UNION ALL SELECT n + 1 FROM s WHERE n < $4) \
         INSERT INTO tasks (id, owner_id, title, description, done, created_at, updated_at) \
         SELECT printf('00000000-0000-7000-8000-%012x', n), $1, 'task ' || n, NULL, 0, $2, $2 FROM s"
    } else {
        "INSERT INTO tasks (id, owner_id, title, description, done, created_at, updated_at) \
         SELECT '00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'), $1, 'task ' || n, NULL, 0, $2, $2 \
         FROM generate_series(CAST($3 AS BIGINT), CAST($4 AS BIGINT)) AS n"
    };
    sqlx::query(sql)
        .bind(owner)
        .bind(&now)
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

fn seeded_id(n: i64) -> uuid::Uuid {
    uuid::Uuid::parse_str(&format!("00000000-0000-7000-8000-{n:012x}")).expect("valid")
}

/// p50 latency of `count` sequential GETs of `path` on one connection, in ms.
async fn sequential_p50(base: &str, path: String, token: &str, count: u64) -> Result<f64> {
    let case = Case {
        method: http::Method::GET,
        paths: Arc::new(vec![path]),
        headers: vec![header("authorization", &format!("Bearer {token}"))?],
        bodies: Arc::new(Vec::new()),
        expect: 200,
    };
    // Time-boxed rather than counted: one connection, about `count` requests' worth.
    let stats = load::run(
        base,
        &case,
        1,
        Duration::from_millis(300),
        Duration::from_millis(count),
    )
    .await?;
    anyhow::ensure!(stats.errors == 0, "list requests failed");
    Ok(stats.p50_ms)
}

struct Row {
    name: String,
    baseline: Option<Stats>,
    taproom: Stats,
    target: Option<f64>,
    /// Each round's ratio (none without a baseline).
    ratios: Vec<f64>,
    /// Each round's p99 over the baseline's (none without a baseline).
    p99_ratios: Vec<f64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    sqlx::any::install_default_drivers();
    let args = args()?;
    let dbs = databases(args.sqlite)?;
    let result = run(&args, &dbs).await;
    drop_databases(&dbs.pg).await;
    result
}

async fn run(args: &Args, dbs: &Databases) -> Result<()> {
    let http = reqwest::Client::new();
    let backend = if args.sqlite { "SQLite" } else { "PostgreSQL" };
    eprintln!(
        "bench: {backend}, {} connections, {:?} per case",
        args.connections, args.duration
    );
    let users = spawn(server(args, dbs, "users", 0))?;
    let mut tasks_cmd = server(args, dbs, "tasks", 0);
    tasks_cmd.env("USERS_URL", &users.url);
    let tasks = spawn(tasks_cmd)?;
    ready(&http, &users.url, Duration::from_secs(30)).await?;
    ready(&http, &tasks.url, Duration::from_secs(30)).await?;

    let (_, token) = user(&http, &users.url, "bencher").await?;
    let jwks: serde_json::Value = http
        .get(format!("{}/.well-known/jwks.json", users.url))
        .send()
        .await?
        .json()
        .await?;
    let x = jwks["keys"][0]["x"].as_str().context("a public key")?;
    let mut baseline_cmd = Command::new(&args.baseline);
    baseline_cmd
        .env("BASELINE_DATABASE_URL", &dbs.tasks_url)
        .env("BASELINE_POOL", "10")
        .env("BASELINE_PUBLIC_KEY", x);
    let baseline = spawn(baseline_cmd)?;

    // 1000 tasks to read, made through the API.
    let mut ids = Vec::new();
    for i in 0..1000 {
        let t: serde_json::Value = http
            .post(format!("{}/v1/tasks", tasks.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({"title": format!("seed {i}")}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(format!(
            "/v1/tasks/{}",
            t["id"].as_str().context("task created")?
        ));
    }
    let auth = header("authorization", &format!("Bearer {token}"))?;
    let json_type = header("content-type", "application/json")?;
    let cases = [
        (
            "ping",
            0.6,
            Case {
                method: http::Method::GET,
                paths: Arc::new(vec!["/ping".into()]),
                headers: vec![],
                bodies: Arc::new(vec![]),
                expect: 200,
            },
        ),
        (
            "get_task (get-by-id)",
            0.9,
            Case {
                method: http::Method::GET,
                paths: Arc::new(ids),
                headers: vec![auth.clone()],
                bodies: Arc::new(vec![]),
                expect: 200,
            },
        ),
        (
            "create_task (create)",
            0.9,
            Case {
                method: http::Method::POST,
                paths: Arc::new(vec!["/v1/tasks".into()]),
                headers: vec![auth.clone(), json_type.clone()],
                bodies: Arc::new(vec![Bytes::from_static(
                    br#"{"title":"Buy hops","description":"Cascade, 50 g"}"#,
                )]),
                expect: 201,
            },
        ),
    ];
    let warmup = Duration::from_secs(1);
    let times = (warmup, args.duration);
    let mut rows = Vec::new();
    let chosen = |name: &str| args.operation.as_deref().is_none_or(|op| op == name);
    if let Some(op) = args
        .operation
        .as_deref()
        .filter(|op| !cases.iter().any(|c| c.0 == *op))
    {
        anyhow::bail!("--operation {op}: not one of the bench's operations");
    }
    for (name, target, case) in cases
        .iter()
        .filter(|(name, ..)| args.only != Only::Telemetry && chosen(name))
    {
        eprintln!("bench: {name}, baseline / taproom / taproom / baseline");
        let urls = (baseline.url.as_str(), tasks.url.as_str());
        let pair = load::paired(urls, case, args.connections, times, args.rounds).await?;
        rows.push(Row {
            name: name.to_string(),
            ratios: pair.ratios,
            p99_ratios: pair.p99_ratios,
            baseline: Some(pair.a),
            taproom: pair.b,
            target: Some(*target),
        });
    }
    if args.only == Only::Baseline {
        let mut report = new_report("cargo xtask bench --only baseline", args, backend);
        render_rows(&rows, &mut report);
        return write_report(args, &report);
    }

    // What per-request metrics and tracing (no exporter) cost: the same cases against two
    // fresh tasks processes on the same database, one with TELEMETRY=false. Both fresh,
    // so that neither has served the cases above: a heap grown by that load would be
    // counted against telemetry.
    eprintln!("bench: telemetry on vs off");
    let fresh = |telemetry: &str| -> Result<Proc> {
        let mut cmd = server(args, dbs, "tasks", 0);
        cmd.env("USERS_URL", &users.url).env("TELEMETRY", telemetry);
        spawn(cmd)
    };
    let (tasks_off, tasks_on) = (fresh("false")?, fresh("true")?);
    ready(&http, &tasks_off.url, Duration::from_secs(30)).await?;
    ready(&http, &tasks_on.url, Duration::from_secs(30)).await?;
    let mut telemetry = Vec::new();
    for (name, _, case) in cases.iter().filter(|(name, ..)| chosen(name)) {
        eprintln!("bench: {name}, telemetry off / on / on / off");
        let urls = (tasks_off.url.as_str(), tasks_on.url.as_str());
        let pair = load::paired(urls, case, args.connections, times, args.rounds).await?;
        telemetry.push((name.to_string(), pair));
    }
    drop((tasks_off, tasks_on));
    if args.only == Only::Telemetry {
        let mut report = new_report("cargo xtask bench --only telemetry", args, backend);
        render_telemetry(&telemetry, &mut report);
        return write_report(args, &report);
    }

    let front_cases: Vec<(&str, &Case)> = cases[1..].iter().map(|(n, _, c)| (*n, c)).collect();
    let doors = front::front_doors(
        command(args, dbs, "all"),
        &http,
        &front_cases,
        args.connections,
        warmup,
        args.duration,
    )
    .await?;
    let mut sweep = front::Sweep::new();
    for connections in [1, 16, 256] {
        for (name, _, case) in &cases {
            eprintln!("bench: {name} at {connections} connections");
            let b = load::run(&baseline.url, case, connections, warmup, args.duration).await?;
            let t = load::run(&tasks.url, case, connections, warmup, args.duration).await?;
            sweep.push((connections, name.to_string(), b, t));
        }
    }
    eprintln!("bench: create_user (argon2id)");
    let bodies: Vec<Bytes> = (0..200_000)
        .map(|i| Bytes::from(format!(r#"{{"username":"load{i}","email":"load{i}@example.com","password":"a bench password"}}"#)))
        .collect();
    let create_user = Case {
        method: http::Method::POST,
        paths: Arc::new(vec!["/v1/users".into()]),
        headers: vec![json_type.clone()],
        bodies: Arc::new(bodies),
        expect: 201,
    };
    let u = load::run(
        &users.url,
        &create_user,
        args.connections,
        warmup,
        args.duration,
    )
    .await?;
    rows.push(Row {
        name: "create_user (argon2id, no baseline)".into(),
        baseline: None,
        taproom: u,
        target: None,
        ratios: Vec::new(),
        p99_ratios: Vec::new(),
    });
    let loaded_rss = rss_kb(tasks.child.id())?;

    // Start-up to ready, and idle memory, of a fresh tasks process (median of 5).
    eprintln!("bench: start-up and idle RSS");
    let mut startups = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..5 {
        let port = free_port()?;
        let mut cmd = server(args, dbs, "tasks", port);
        cmd.env("USERS_URL", &users.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let _ = ready(&http, &url, Duration::from_secs(30)).await?;
        startups.push(started.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle.push(rss_kb(child.id())?);
        let _ = child.kill();
        let _ = child.wait();
    }
    startups.sort();
    idle.sort();
    let startup_ms = startups[2].as_secs_f64() * 1000.0;
    let idle_mb = idle[2] as f64 / 1024.0;

    // Keyset pagination: the first page and a deep one, at 10k and at 1M rows.
    eprintln!("bench: list cost at 10k and 1M rows");
    let (lister, lister_token) = user(&http, &users.url, "lister").await?;
    let token_after =
        |n: i64| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seeded_id(n).as_bytes());
    let mut lists = Vec::new();
    let mut seeded = 0;
    for rows_wanted in [10_000i64, 1_000_000] {
        seed(
            &dbs.tasks_url,
            args.sqlite,
            &lister,
            seeded + 1,
            rows_wanted,
        )
        .await?;
        seeded = rows_wanted;
        let first =
            sequential_p50(&tasks.url, "/v1/tasks?limit=20".into(), &lister_token, 2000).await?;
        let deep = sequential_p50(
            &tasks.url,
            format!(
                "/v1/tasks?limit=20&page_token={}",
                token_after(rows_wanted - 20)
            ),
            &lister_token,
            2000,
        )
        .await?;
        lists.push((rows_wanted, first, deep));
    }

    let mut report = render(
        args, backend, &rows, loaded_rss, startup_ms, idle_mb, &lists,
    );
    render_telemetry(&telemetry, &mut report);
    front::render_doors(&doors, args.connections, &mut report);
    front::render_sweep(&sweep, &mut report);
    write_report(args, &report)
}

fn write_report(args: &Args, (md, csv): &(String, String)) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.md"), md)?;
    std::fs::write(args.out.join("report.csv"), csv)?;
    println!("{md}");
    println!("written to {}", args.out.join("report.md").display());
    Ok(())
}

const CSV_HEADER: &str = "metric,baseline,taproom,ratio,target,baseline_p50_ms,baseline_p99_ms,taproom_p50_ms,taproom_p99_ms,errors,taproom_requests\n";

/// A report (markdown, CSV) with its title and setting, and the CSV's header.
fn new_report(title: &str, args: &Args, backend: &str) -> (String, String) {
    (
        format!("# {title}\n\n{}", setting(args, backend)),
        String::from(CSV_HEADER),
    )
}

/// The line under a report's title: what was run, where and when.
fn setting(args: &Args, backend: &str) -> String {
    format!(
        "{backend}, {} connections, {} s per run after 1 s warm-up, {} round(s) of a, b, b, a for each comparison, load from a separate process on 127.0.0.1, {} ({}).\n\n",
        args.connections,
        args.duration.as_secs(),
        args.rounds,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map(|n| format!("{n} cores")).unwrap_or_default(),
    )
}

/// A ratio, with the lowest and highest round's when there was more than one round:
/// how far one round can be trusted on the machine at hand. From three rounds on, the
/// rounds' median too: one disturbed run (a neighbour's burst on a shared machine) moves
/// the ratio of the sums but hardly the median.
fn ratio_text(ratio: f64, rounds: &[f64]) -> String {
    if rounds.len() < 2 {
        return format!("{ratio:.3}");
    }
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    if sorted.len() < 3 {
        return format!("{ratio:.3} ({lo:.3}–{hi:.3})");
    }
    let mid = sorted.len() / 2;
    let median = match sorted.len() % 2 {
        1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    };
    format!("{ratio:.3} (median {median:.3}; {lo:.3}–{hi:.3})")
}

/// The telemetry table: each case without and with per-request metrics and tracing.
fn render_telemetry(cases: &[(String, load::Pair)], (md, csv): &mut (String, String)) {
    md.push_str(
        "\n### Metrics and tracing (no exporter) on vs off\n\nEach case in rounds of off, on, on, off; throughput and percentiles over all runs of a side (in brackets: the median round's ratio, and the lowest and highest).\n\n\
         | operation | off req/s | on req/s | on / off | target | off p50 / p99 ms | on p50 / p99 ms | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, pair) in cases {
        let (off, on) = (&pair.a, &pair.b);
        let Stats {
            rps: off_rps,
            p50_ms: off_p50,
            p99_ms: off_p99,
            ..
        } = off;
        let Stats {
            rps: on_rps,
            p50_ms: on_p50,
            p99_ms: on_p99,
            requests,
            ..
        } = on;
        let (ratio, errors) = (pair.ratio(), off.errors + on.errors);
        let shown = ratio_text(ratio, &pair.ratios);
        md.push_str(&format!(
            "| {name} | {off_rps:.0} | {on_rps:.0} | {shown} | ≥ 0.95 | {off_p50:.2} / {off_p99:.2} | {on_p50:.2} / {on_p99:.2} | {errors} |\n"
        ));
        csv.push_str(&format!(
            "telemetry {name},{off_rps:.1},{on_rps:.1},{ratio:.3},0.95,{off_p50:.3},{off_p99:.3},{on_p50:.3},{on_p99:.3},{errors},{requests}\n"
        ));
    }
}

fn render(
    args: &Args,
    backend: &str,
    rows: &[Row],
    loaded_rss_kb: u64,
    startup_ms: f64,
    idle_mb: f64,
    lists: &[(i64, f64, f64)],
) -> (String, String) {
    let mut report = new_report("cargo xtask bench", args, backend);
    render_rows(rows, &mut report);
    let (md, csv) = &mut report;
    md.push_str(&format!(
        "\n| measure | value | target |\n|---|---:|---:|\n\
         | start-up to first 200 on /readyz (tasks, median of 5) | {startup_ms:.0} ms | < 300 ms |\n\
         | idle RSS, fresh tasks process (median of 5) | {idle_mb:.1} MB | < 30 MB |\n\
         | RSS of the tasks process after the load | {:.1} MB | — |\n",
        loaded_rss_kb as f64 / 1024.0
    ));
    csv.push_str(&format!(
        "startup_ms,,{startup_ms:.1},,300,,,,,,\nidle_rss_mb,,{idle_mb:.2},,30,,,,,,\n"
    ));
    for (rows, first, deep) in lists {
        md.push_str(&format!(
            "| list_tasks at {rows} rows: first page / deepest page p50 | {first:.2} / {deep:.2} ms (×{:.2}) | deep ≤ ×1.5 |\n",
            deep / first
        ));
        csv.push_str(&format!("list_{rows}_first_p50_ms,,{first:.3},,,,,,,,\nlist_{rows}_deep_p50_ms,,{deep:.3},{:.3},1.5,,,,,,\n", deep / first));
    }
    report
}

/// The operations' table: throughput and latency against the baseline.
fn render_rows(rows: &[Row], (md, csv): &mut (String, String)) {
    md.push_str("Throughput and percentiles over all runs of a side (in brackets, from two rounds on: the median round's ratio, and the lowest and highest).\n\n");
    md.push_str("| operation | baseline req/s | taproom req/s | ratio | target | baseline p50 / p99 ms | taproom p50 / p99 ms | p99 / baseline p99 (target ≤ 1.3) | errors |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let t = &r.taproom;
        let (b_rps, ratio, b_lat, b_p50, b_p99) = match &r.baseline {
            Some(b) => (
                format!("{:.0}", b.rps),
                ratio_text(t.rps / b.rps, &r.ratios),
                format!("{:.2} / {:.2}", b.p50_ms, b.p99_ms),
                format!("{:.3}", b.p50_ms),
                format!("{:.3}", b.p99_ms),
            ),
            None => (
                "—".into(),
                "—".into(),
                "—".into(),
                String::new(),
                String::new(),
            ),
        };
        let target = r
            .target
            .map(|x| format!("≥ {x:.2}"))
            .unwrap_or_else(|| "—".into());
        let errors = t.errors + r.baseline.as_ref().map_or(0, |b| b.errors);
        let p99_ratio = r
            .baseline
            .as_ref()
            .map(|b| ratio_text(t.p99_ms / b.p99_ms, &r.p99_ratios))
            .unwrap_or_else(|| "—".into());
        md.push_str(&format!(
            "| {} | {b_rps} | {:.0} | {ratio} | {target} | {b_lat} | {:.2} / {:.2} | {p99_ratio} | {errors} |\n",
            r.name, t.rps, t.p50_ms, t.p99_ms
        ));
        csv.push_str(&format!(
            "{},{},{:.1},{},{},{b_p50},{b_p99},{:.3},{:.3},{errors},{}\n",
            r.name,
            r.baseline
                .as_ref()
                .map(|b| format!("{:.1}", b.rps))
                .unwrap_or_default(),
            t.rps,
            r.baseline
                .as_ref()
                .map(|b| format!("{:.3}", t.rps / b.rps))
                .unwrap_or_default(),
            r.target.map(|x| x.to_string()).unwrap_or_default(),
            t.p50_ms,
            t.p99_ms,
            t.requests
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::ratio_text;

    #[test]
    fn a_ratio_shows_its_rounds_median_and_range() {
        assert_eq!(ratio_text(0.95, &[0.95]), "0.950");
        assert_eq!(ratio_text(0.95, &[1.0, 0.9]), "0.950 (0.900–1.000)");
        assert_eq!(
            ratio_text(0.9, &[1.2, 0.5, 0.97]),
            "0.900 (median 0.970; 0.500–1.200)"
        );
        assert_eq!(
            ratio_text(0.9, &[1.0, 0.5, 0.9, 0.96]),
            "0.900 (median 0.930; 0.500–1.000)"
        );
    }
}
