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
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Database URL for the users service (sqlite://… or postgres://…); overrides DATABASE_URL.
    #[arg(long, env = "USERS_DATABASE_URL", global = true)]
    pub users_database_url: Option<String>,

    /// Database URL for the beers service; overrides DATABASE_URL.
    #[arg(long, env = "BEERS_DATABASE_URL", global = true)]
    pub beers_database_url: Option<String>,

    /// Database URL for the orders service; overrides DATABASE_URL.
    #[arg(long, env = "ORDERS_DATABASE_URL", global = true)]
    pub orders_database_url: Option<String>,

    /// Database URL for the promotions service; overrides DATABASE_URL.
    #[arg(long, env = "PROMOTIONS_DATABASE_URL", global = true)]
    pub promotions_database_url: Option<String>,

    /// Database URL for the tasks service; overrides DATABASE_URL.
    #[arg(long, env = "TASKS_DATABASE_URL", global = true)]
    pub tasks_database_url: Option<String>,

    /// Address every service binds to (0.0.0.0 in a container).
    #[arg(long, env = "BIND_ADDRESS", default_value = "127.0.0.1", global = true)]
    pub bind_address: IpAddr,

    /// Port of the users service (0 picks a free one).
    #[arg(long, env = "USERS_PORT", default_value_t = 5001, global = true)]
    pub users_port: u16,

    /// Port of the beers service (0 picks a free one).
    #[arg(long, env = "BEERS_PORT", default_value_t = 5002, global = true)]
    pub beers_port: u16,

    /// Port of the orders service (0 picks a free one).
    #[arg(long, env = "ORDERS_PORT", default_value_t = 5003, global = true)]
    pub orders_port: u16,

    /// Port of the tasks service (0 picks a free one).
    #[arg(long, env = "TASKS_PORT", default_value_t = 5004, global = true)]
    pub tasks_port: u16,

    /// Port of the promotions service (0 picks a free one).
    #[arg(long, env = "PROMOTIONS_PORT", default_value_t = 5005, global = true)]
    pub promotions_port: u16,

    /// Port of the built-in gateway `server all` puts in front of every service (0 picks a
    /// free one).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 5000, global = true)]
    pub gateway_port: u16,

    /// Whether `server all` runs the built-in gateway.
    #[arg(long, env = "GATEWAY", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub gateway: bool,

    /// Base URL of the users service, whose public keys the other services verify tokens
    /// with. `server all` points it at its own users service.
    #[arg(
        long,
        env = "USERS_URL",
        default_value = "http://127.0.0.1:5001",
        global = true
    )]
    pub users_url: String,

    /// Base URL of the beers service, which orders looks beers up in. `server all`
    /// points it at its own beers service.
    #[arg(
        long,
        env = "BEERS_URL",
        default_value = "http://127.0.0.1:5002",
        global = true
    )]
    pub beers_url: String,

    /// Base URL of the promotions service, which orders checks promo codes with and (without
    /// NATS_URL) delivers events to. `server all` points it at its own promotions service.
    #[arg(
        long,
        env = "PROMOTIONS_URL",
        default_value = "http://127.0.0.1:5005",
        global = true
    )]
    pub promotions_url: String,

    /// Shared secret services deliver events to each other with (over HTTP). Required by
    /// orders and promotions when run apart; `server all` makes one up if unset.
    #[arg(long, env = "EVENTS_TOKEN", global = true, hide_env_values = true)]
    pub events_token: Option<String>,

    /// NATS server with JetStream (e.g. nats://127.0.0.1:4222). When set, events go through
    /// the TAPROOM_EVENTS stream instead of HTTP.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,

    /// Whether this instance runs an outbox relay (delivering its service's events).
    /// Any number of instances may; turn it off to leave delivery to others.
    #[arg(long, env = "OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub outbox_relay: bool,

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

    /// Lifetime of the access tokens the users service issues, in seconds.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 3600, global = true)]
    pub token_ttl_secs: u64,

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

    /// Log level: trace, debug, info, warning, error or critical.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// Log line format on stdout.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = super::server::LogFormat::Json, global = true)]
    pub log_format: super::server::LogFormat,
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

    /// The bound on every call to another service.
    pub fn service_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.service_timeout_ms)
    }

    pub fn port(&self, service: &str) -> u16 {
        match service {
            "users" => self.users_port,
            "beers" => self.beers_port,
            "orders" => self.orders_port,
            "tasks" => self.tasks_port,
            "promotions" => self.promotions_port,
            _ => 0,
        }
    }

    pub fn bind(&self, service: &str) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.port(service))
    }

    /// The database URL of one service: its own setting, else one derived from
    /// DATABASE_URL, else a SQLite file under DATA_DIR.
    pub fn database_url(&self, service: &str) -> Result<String> {
        let own = match service {
            "users" => self.users_database_url.clone(),
            "beers" => self.beers_database_url.clone(),
            "orders" => self.orders_database_url.clone(),
            "tasks" => self.tasks_database_url.clone(),
            "promotions" => self.promotions_database_url.clone(),
            _ => None,
        };
        if let Some(url) = own {
            return Ok(url);
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
