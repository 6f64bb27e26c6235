//! Configuration: every setting from the environment (optionally a `.env` file),
//! overridable by CLI flags. `server --help` lists them all.

use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Directory for the SQLite databases used when no database URL is set.
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// PostgreSQL server URL shared by all services; each gets its own database,
    /// named `<database in the URL, or taproom>_<service>`, created if missing.
    // URL settings can carry passwords: `--help` must not print what the environment says.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address every service binds to (0.0.0.0 in a container).
    #[arg(long, env = "BIND_ADDRESS", default_value = "127.0.0.1", global = true)]
    pub bind_address: IpAddr,

    /// Port of the built-in gateway `server all` puts in front of every service (0 picks a
    /// free one).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 5000, global = true)]
    pub gateway_port: u16,

    /// Whether `server all` runs the built-in gateway.
    #[arg(long, env = "GATEWAY", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub gateway: bool,

    /// Shared secret services deliver events to each other with (over HTTP). Required by
    /// orders and promotions when run apart; `server all` makes one up if unset.
    #[arg(long, env = "EVENTS_TOKEN", global = true, hide_env_values = true)]
    pub events_token: Option<String>,

    /// NATS server with JetStream (e.g. nats://127.0.0.1:4222). When set, events go through
    /// the TAPROOM_EVENTS stream instead of HTTP.
    #[arg(long, env = "NATS_URL", global = true, hide_env_values = true)]
    pub nats_url: Option<String>,

    /// NATS credentials file (a user JWT and nkey seed, as `nsc` writes them). User and
    /// password (`nats://user:pass@host`) or a token (`nats://token@host`) may instead be
    /// given in NATS_URL.
    #[arg(long, env = "NATS_CREDS_FILE", global = true)]
    pub nats_creds_file: Option<PathBuf>,

    /// Seconds the TAPROOM_EVENTS stream keeps a message (its max age); must be shorter
    /// than EVENT_DEDUP_RETENTION_SECS, so that no event outlives its duplicate check.
    #[arg(long, env = "NATS_STREAM_MAX_AGE_SECS", default_value_t = 3 * 86400, global = true)]
    pub nats_stream_max_age_secs: u64,

    /// Bytes the TAPROOM_EVENTS stream may hold; the oldest messages go first beyond it.
    /// NATS reserves this much of its store up front (it refuses a stream it cannot fit).
    #[arg(long, env = "NATS_STREAM_MAX_BYTES", default_value_t = 256 << 20, global = true)]
    pub nats_stream_max_bytes: i64,

    /// Seconds a delivered event stays in its outbox (for inspection) before it is pruned.
    #[arg(
        long,
        env = "OUTBOX_RETENTION_SECS",
        default_value_t = 86400,
        global = true
    )]
    pub outbox_retention_secs: u64,

    /// Seconds a receiver remembers an event it took (its duplicate check), and the age
    /// beyond which it refuses an event: older events could have been forgotten.
    #[arg(long, env = "EVENT_DEDUP_RETENTION_SECS", default_value_t = 7 * 86400, global = true)]
    pub event_dedup_retention_secs: u64,

    /// Seconds a checkout's Idempotency-Key is remembered (and replayed).
    #[arg(
        long,
        env = "IDEMPOTENCY_RETENTION_SECS",
        default_value_t = 86400,
        global = true
    )]
    pub idempotency_retention_secs: u64,

    /// Seconds between passes of each service's pruning of expired rows.
    #[arg(
        long,
        env = "PRUNE_INTERVAL_SECS",
        default_value_t = 600,
        global = true
    )]
    pub prune_interval_secs: u64,

    /// Whether this instance runs an outbox relay (delivering its service's events).
    /// Any number of instances may; turn it off to leave delivery to others.
    #[arg(long, env = "OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub outbox_relay: bool,

    /// Milliseconds between an outbox relay's looks for events when nothing woke it
    /// (a commit in the same process or, on PostgreSQL, a notification wakes it at once).
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 500, global = true)]
    pub outbox_poll_ms: u64,

    /// Milliseconds an outbox relay's claim on events lasts unless renewed (it renews
    /// while sending): after a relay crashes, how long its events wait for another.
    #[arg(long, env = "OUTBOX_CLAIM_MS", default_value_t = 3000, global = true)]
    pub outbox_claim_ms: u64,
    /// Per-request metrics and trace spans (and trace ids in log lines). On in
    /// production; `false` only to measure what they cost (`cargo xtask bench` does).
    #[arg(long, env = "TELEMETRY", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub telemetry: bool,

    /// OpenTelemetry collector to export spans to over OTLP/HTTP (protobuf), e.g.
    /// `http://otel-collector:4318` (`/v1/traces` is appended). Unset: nothing is
    /// exported; trace context is still accepted, propagated and logged. The standard
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_BSP_*` variables apply.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        global = true,
        hide_env_values = true
    )]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// Timeout, in milliseconds, for calls to other services (connecting included).
    #[arg(
        long,
        env = "SERVICE_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub service_timeout_ms: u64,

    /// Maximum connections in each service's database pool.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub database_max_connections: u32,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, env = "REQUEST_BODY_MAX_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub request_body_max_bytes: usize,

    /// Lifetime of the access tokens the users service issues, in seconds. Short: other
    /// services accept an access token until it expires, whatever happens meanwhile.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 300, global = true)]
    pub token_ttl_secs: u64,

    /// Proxies whose `X-Forwarded-For` is believed (CIDRs, comma-separated): the client
    /// address used by rate limits and login throttling is the right-most hop not in
    /// this list. The default trusts loopback, where `server all`'s gateway runs; add
    /// your load balancers' or ingress' addresses, never the clients'.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1/32,::1/128",
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Requests per minute one client address may make to operations that check or
    /// create a password (`x-rate-limit: credentials`; excess: 429).
    #[arg(
        long,
        env = "CREDENTIALS_RATE_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub credentials_rate_per_minute: u32,

    /// How many of those requests one address may make at once before the rate applies.
    #[arg(long, env = "CREDENTIALS_BURST", default_value_t = 20, global = true)]
    pub credentials_burst: u32,

    /// Failed logins in a row from one client address before that address must wait to
    /// try the account again (30 s, doubling per further failure, at most 15 minutes).
    #[arg(
        long,
        env = "LOGIN_FAILURES_PER_ADDRESS",
        default_value_t = 5,
        global = true
    )]
    pub login_failures_per_address: u32,

    /// Failed logins in a row from any addresses before the account itself must wait
    /// (the same waits): the bound on guessing from many addresses.
    #[arg(
        long,
        env = "LOGIN_FAILURES_PER_ACCOUNT",
        default_value_t = 100,
        global = true
    )]
    pub login_failures_per_account: u32,

    /// Password hashes computed at once (each takes ~19 MiB and a core for tens of
    /// milliseconds); 0: the number of cores.
    #[arg(
        long,
        env = "PASSWORD_HASH_CONCURRENCY",
        default_value_t = 0,
        global = true
    )]
    pub password_hash_concurrency: usize,

    /// Password hashes that may wait for one of those slots; beyond that a request gets
    /// 503 with `Retry-After` instead of queueing without bound.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 16, global = true)]
    pub password_hash_queue: usize,
    /// File holding the key-encryption key the users service seals its token-signing keys
    /// with (32 random bytes, base64: `openssl rand -base64 32`), e.g. a mounted secret.
    /// Required on PostgreSQL unless SIGNING_KEY_ENCRYPTION_KEY is set; on SQLite one is
    /// made in DATA_DIR (signing-key.kek, mode 0600) when neither is set.
    #[arg(long, env = "SIGNING_KEY_FILE", global = true)]
    pub signing_key_file: Option<PathBuf>,

    /// The key-encryption key itself (same format as the file's content), instead of
    /// SIGNING_KEY_FILE.
    #[arg(
        long,
        env = "SIGNING_KEY_ENCRYPTION_KEY",
        global = true,
        hide_env_values = true
    )]
    pub signing_key_encryption_key: Option<String>,

    /// Lifetime of each refresh token, in seconds (default 30 days): a session unused
    /// for that long ends.
    #[arg(
        long,
        env = "REFRESH_TOKEN_TTL_SECS",
        default_value_t = 30 * 24 * 3600,
        global = true
    )]
    pub refresh_token_ttl_secs: u64,

    /// Origins allowed to call the services from a browser (CORS), comma-separated;
    /// `*` allows any origin. Empty (the default): no cross-origin access.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before exiting anyway.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout_secs: u64,

    /// How SQLite databases sync commits: `full` (an acknowledged write survives power
    /// loss) or `normal` (faster; the last commits before a power loss can vanish).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t = super::db::Synchronous::Full, global = true)]
    pub sqlite_synchronous: super::db::Synchronous,

    /// Bounds on what one client connection may hold (every service and the gateway).
    #[command(flatten)]
    pub limits: Limits,

    /// How the exercises service runs submitted code.
    #[command(flatten)]
    pub sandbox: SandboxSettings,

    /// Log level: trace, debug, info, warning, error or critical.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// Log line format on stdout.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = super::server::LogFormat::Json, global = true)]
    pub log_format: super::server::LogFormat,

    /// Each service's port, database URL and base URL (`<NAME>_PORT`, …), one set per
    /// service in `crate::SERVICES`.
    #[command(flatten)]
    pub services: ServiceSettings,
}

/// Slow or idle clients must not hold a server's connections and handlers forever.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Milliseconds a client has to send a request's headers (on a new connection: its
    /// first request's); also how long an idle keep-alive connection stays open. Slower
    /// connections are closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a client has to send a whole request body once its headers are in;
    /// slower: 408.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub body_read_timeout_ms: u64,

    /// Connections each listener (every service, the gateway) keeps open at once; one more
    /// is answered 503 and closed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,
}

/// The code sandbox of the exercises service: its worker pool and the limits of each run.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// Submissions evaluated at once (0: one per CPU core)
    #[arg(long, env = "SANDBOX_WORKERS", default_value_t = 0, global = true)]
    pub sandbox_workers: usize,

    /// CPU seconds a run may use
    #[arg(long, env = "SANDBOX_CPU_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub sandbox_cpu_secs: u64,

    /// Wall-clock milliseconds a run may take before it is killed
    #[arg(long, env = "SANDBOX_WALL_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..), global = true)]
    pub sandbox_wall_ms: u64,

    /// Address space of each process of a run, in MiB
    #[arg(long, env = "SANDBOX_MEMORY_MB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..), global = true)]
    pub sandbox_memory_mb: u64,

    /// Processes (and threads) a run may have at once
    #[arg(long, env = "SANDBOX_PROCESSES", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(4..), global = true)]
    pub sandbox_processes: u64,

    /// Bytes a run may print (stdout and stderr) before it is killed
    #[arg(long, env = "SANDBOX_OUTPUT_BYTES", default_value_t = 1 << 20, global = true)]
    pub sandbox_output_bytes: usize,

    /// Size of a run's private /tmp (its only writable place), in MiB
    #[arg(long, env = "SANDBOX_TMPFS_MB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub sandbox_tmpfs_mb: u64,

    /// The bubblewrap binary
    #[arg(
        long,
        env = "SANDBOX_BWRAP",
        default_value = "/usr/bin/bwrap",
        global = true
    )]
    pub sandbox_bwrap: PathBuf,

    /// When the service runs as root: run slot N runs as host uid and gid BASE+N
    #[arg(
        long,
        env = "SANDBOX_UID_BASE",
        default_value_t = 200_000,
        global = true
    )]
    pub sandbox_uid_base: u32,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            sandbox_workers: 0,
            sandbox_cpu_secs: 5,
            sandbox_wall_ms: 10_000,
            sandbox_memory_mb: 256,
            sandbox_processes: 32,
            sandbox_output_bytes: 1 << 20,
            sandbox_tmpfs_mb: 16,
            sandbox_bwrap: "/usr/bin/bwrap".into(),
            sandbox_uid_base: 200_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// What dropshot enforces.
    pub fn connection_limits(&self) -> dropshot::ConnectionLimits {
        dropshot::ConnectionLimits {
            header_read_timeout: Some(std::time::Duration::from_millis(
                self.header_read_timeout_ms,
            )),
            body_read_timeout: Some(std::time::Duration::from_millis(self.body_read_timeout_ms)),
            max_connections: Some(self.max_connections as usize),
        }
    }
}

/// One service's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSetting {
    /// `<NAME>_PORT`: where it listens (0: any free port).
    pub port: u16,
    /// `<NAME>_DATABASE_URL`: its database, overriding DATABASE_URL and DATA_DIR.
    pub database_url: Option<String>,
    /// `<NAME>_URL`: where other services reach it when it runs apart (`server all`
    /// uses its own instance).
    pub url: String,
}

/// Every service's settings, by name. Its command-line flags and environment variables
/// are made from the service list, so a new service gets them without a line here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings(std::collections::BTreeMap<&'static str, ServiceSetting>);

impl Default for ServiceSettings {
    /// Every service's defaults: its own port, no database URL, itself on 127.0.0.1.
    fn default() -> Self {
        ServiceSettings(
            crate::SERVICES
                .iter()
                .map(|def| {
                    let setting = ServiceSetting {
                        port: def.port,
                        database_url: None,
                        url: format!("http://127.0.0.1:{}", def.port),
                    };
                    (def.name, setting)
                })
                .collect(),
        )
    }
}

impl ServiceSettings {
    fn ids(name: &str) -> [String; 3] {
        [
            format!("{name}-port"),
            format!("{name}-database-url"),
            format!("{name}-url"),
        ]
    }
}

impl clap::FromArgMatches for ServiceSettings {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = ServiceSettings::default();
        settings.update_from_arg_matches(matches)?;
        Ok(settings)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for (name, setting) in self.0.iter_mut() {
            let [port, database_url, url] = Self::ids(name);
            if let Some(p) = matches.get_one::<u16>(&port) {
                setting.port = *p;
            }
            if let Some(d) = matches.get_one::<String>(&database_url) {
                setting.database_url = Some(d.clone());
            }
            if let Some(u) = matches.get_one::<String>(&url) {
                setting.url = u.clone();
            }
        }
        Ok(())
    }
}

impl clap::Args for ServiceSettings {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        use clap::Arg;
        for def in crate::SERVICES {
            let env = def.env_prefix();
            let [port, database_url, url] = Self::ids(def.name);
            cmd = cmd
                .arg(
                    Arg::new(port.clone())
                        .long(port)
                        .env(format!("{env}_PORT"))
                        .value_parser(clap::value_parser!(u16))
                        .default_value(def.port.to_string())
                        .global(true)
                        .help(format!("Port of the {} service (0 picks a free one)", def.name)),
                )
                .arg(
                    Arg::new(database_url.clone())
                        .long(database_url)
                        .env(format!("{env}_DATABASE_URL"))
                        .hide_env_values(true)
                        .global(true)
                        .help(format!(
                            "Database URL of the {} service (sqlite://… or postgres://…); overrides DATABASE_URL",
                            def.name
                        )),
                )
                .arg(
                    Arg::new(url.clone())
                        .long(url)
                        .env(format!("{env}_URL"))
                        .hide_env_values(true)
                        .default_value(format!("http://127.0.0.1:{}", def.port))
                        .global(true)
                        .help(format!(
                            "Base URL of the {} service for the services that call it when run apart",
                            def.name
                        )),
                );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl Config {
    /// Settings from the environment alone, as `server` would read them with no flags.
    pub fn from_env() -> Result<Config> {
        use clap::{Args, Command, FromArgMatches};
        let cmd = Config::augment_args(Command::new("taproom"));
        let matches = cmd
            .try_get_matches_from(["taproom"])
            .context("reading configuration")?;
        Ok(Config::from_arg_matches(&matches)?)
    }

    /// Refuses settings that would make events unsafe: a guessable EVENTS_TOKEN, or a
    /// stream that keeps events longer than receivers remember them.
    pub fn check_events(&self) -> Result<()> {
        if let Some(token) = &self.events_token {
            super::events::check_token(token)?;
        }
        anyhow::ensure!(
            self.nats_stream_max_age_secs >= super::nats::DUPLICATE_WINDOW.as_secs(),
            "NATS_STREAM_MAX_AGE_SECS must be at least {} (the stream's duplicate window)",
            super::nats::DUPLICATE_WINDOW.as_secs()
        );
        anyhow::ensure!(
            self.nats_stream_max_age_secs < self.event_dedup_retention_secs,
            "NATS_STREAM_MAX_AGE_SECS ({}) must be less than EVENT_DEDUP_RETENTION_SECS ({}): \
             an event must not outlive its duplicate check",
            self.nats_stream_max_age_secs,
            self.event_dedup_retention_secs
        );
        Ok(())
    }

    /// The bound on every call to another service.
    pub fn service_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.service_timeout_ms)
    }

    /// The settings of `service`. Panics on a name not in `crate::SERVICES`: names come
    /// from that list, so another is a programming error, never a silent port 0.
    pub fn service(&self, service: &str) -> &ServiceSetting {
        self.services
            .0
            .get(service)
            .unwrap_or_else(|| panic!("{service:?} is not a service"))
    }

    /// The settings of `service`, to change (tests, `server all`).
    pub fn service_mut(&mut self, service: &str) -> &mut ServiceSetting {
        self.services
            .0
            .get_mut(service)
            .unwrap_or_else(|| panic!("{service:?} is not a service"))
    }

    pub fn bind(&self, service: &str) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.service(service).port)
    }

    /// The database URL of one service: its own setting, else one derived from
    /// DATABASE_URL, else a SQLite file under DATA_DIR.
    pub fn database_url(&self, service: &str) -> Result<String> {
        if let Some(url) = &self.service(service).database_url {
            return Ok(url.clone());
        }
        if let Some(base) = &self.database_url {
            return per_service_postgres_url(base, service).context("DATABASE_URL");
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("DATA_DIR: cannot create {}", self.data_dir.display()))?;
        Ok(format!(
            "sqlite://{}/{service}.db?mode=rwc",
            self.data_dir.display()
        ))
    }
}

/// `postgres://u@h:5432/shop?x=y` + `users` -> `postgres://u@h:5432/shop_users?x=y`.
pub fn per_service_postgres_url(base: &str, service: &str) -> Result<String> {
    let mut url = url::Url::parse(base).context("not a URL")?;
    anyhow::ensure!(
        matches!(url.scheme(), "postgres" | "postgresql"),
        "must be a postgres:// URL (use <SERVICE>_DATABASE_URL or DATA_DIR for SQLite)"
    );
    let prefix = url.path().trim_start_matches('/').to_string();
    let prefix = if prefix.is_empty() {
        "taproom".to_string()
    } else {
        prefix
    };
    url.set_path(&format!("/{prefix}_{service}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_one_database_per_service() {
        assert_eq!(
            per_service_postgres_url(
                "postgres://postgres@127.0.0.1:5432/shop?sslmode=disable",
                "users"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:5432/shop_users?sslmode=disable"
        );
        assert_eq!(
            per_service_postgres_url("postgres://h", "users").unwrap(),
            "postgres://h/taproom_users"
        );
        assert!(per_service_postgres_url("mysql://h/db", "users").is_err());
        assert!(per_service_postgres_url("not a url", "users").is_err());
    }
}
