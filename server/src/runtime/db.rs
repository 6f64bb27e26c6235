//! One sqlx pool per service over the `Any` driver: SQLite (bundled, the zero-set-up
//! default) or PostgreSQL, with one SQL text for both (`$1` placeholders, booleans as
//! INTEGER 0/1, times as RFC 3339 TEXT, ids as TEXT).

use anyhow::{Context, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How SQLite makes a commit durable (`SQLITE_SYNCHRONOUS`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced to disk before it is acknowledged: an acknowledged write
    /// (a checkout, say) survives power loss.
    #[default]
    Full,
    /// Commits are synced at WAL checkpoints only: faster writes, but the last commits
    /// before a power loss (not a crash of the process) can vanish. Never corrupts.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous = FULL;",
            Synchronous::Normal => "PRAGMA synchronous = NORMAL;",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Whether this database has an outbox (its backlog is reported by `readyz`).
    pub outbox: bool,
    /// The service's metrics (`runtime::metrics`), shared by everything that has the
    /// database handle.
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
    migrator: &'static Migrator,
    /// PostgreSQL only: where to open a listening connection (the pool's connections
    /// cannot LISTEN, they are shared).
    listen_url: Option<std::sync::Arc<str>>,
}

pub type Row = AnyRow;

impl Db {
    /// Connects (creating the database if missing) and runs the service's migrations.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        synchronous: Synchronous,
        migrator: &'static Migrator,
    ) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!(
                "unsupported database URL scheme in {:?}: use sqlite:// or postgres://",
                redact(url)
            );
        };
        if backend == Backend::Postgres
            && !sqlx::Postgres::database_exists(url).await.unwrap_or(false)
        {
            // A concurrent creator may win the race; that is fine.
            if let Err(e) = sqlx::Postgres::create_database(url).await {
                if !sqlx::Postgres::database_exists(url).await.unwrap_or(false) {
                    return Err(e).with_context(|| format!("creating database {}", redact(url)));
                }
            }
        }
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5));
        if backend == Backend::Sqlite {
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; busy_timeout makes a
                    // second writer wait instead of failing with SQLITE_BUSY.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                        .await?;
                    // Per connection: the setting is not stored in the database file.
                    conn.execute(synchronous.pragma()).await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        let db = Db {
            pool,
            backend,
            outbox: false,
            metrics: Default::default(),
            migrator,
            listen_url: (backend == Backend::Postgres).then(|| url.into()),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// A connection that receives PostgreSQL notifications on `channel`; `None` on
    /// SQLite, which has none (one process owns a SQLite database anyway).
    pub async fn listen(&self, channel: &str) -> Result<Option<sqlx::postgres::PgListener>> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url)
            .await
            .with_context(|| format!("listening on {}", redact(url)))?;
        listener.listen(channel).await?;
        Ok(Some(listener))
    }

    pub async fn migrate(&self) -> Result<()> {
        self.migrator
            .run(&self.pool)
            .await
            .context("running migrations")
    }

    /// Reachable and fully migrated; the error says what is wrong.
    pub async fn ready(&self) -> Result<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .context("database unreachable")?;
        let expected = self.migrator.iter().count() as i64;
        anyhow::ensure!(
            applied >= expected,
            "database has {applied} of {expected} migrations applied"
        );
        Ok(())
    }
}

/// Hides the secrets a URL can carry before it is shown or logged: the password of its
/// userinfo, a token alone in the userinfo of a NATS URL (`nats://TOKEN@host`), and any
/// query parameter whose name suggests a secret (`?password=`, `sslpassword`, `token`…).
/// Text that is not a URL is not shown at all: it may still hold a password.
pub fn redact(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a value that is not a URL)".to_string();
    };
    let mut changed = false;
    if parsed.password().is_some() {
        changed |= parsed.set_password(Some(MASK)).is_ok();
    } else if !parsed.username().is_empty()
        && matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss")
    {
        changed |= parsed.set_username(MASK).is_ok();
    }
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        ["pass", "pwd", "secret", "token", "key", "cred", "jwt"]
            .iter()
            .any(|word| name.contains(word))
    };
    if parsed.query_pairs().any(|(name, _)| secret(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    // Unchanged text is shown as given (a SQLite path stays exactly as configured).
    if changed {
        parsed.to_string()
    } else {
        url.to_string()
    }
}

/// What a service's store can fail with.
#[derive(Debug)]
pub enum StoreError {
    /// No such row, or not one the caller may see.
    NotFound,
    /// A unique field is taken; names the field.
    Taken(&'static str),
    Db(anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.into())
    }
}

impl From<anyhow::Error> for StoreError {
    fn from(e: anyhow::Error) -> Self {
        StoreError::Db(e)
    }
}

impl StoreError {
    /// The problem a handler returns; `what` names the resource ("user", "task").
    pub fn problem(self, log: &slog::Logger, request_id: &str, what: &str) -> super::Problem {
        use super::Problem;
        let p = match self {
            StoreError::Taken(field) => {
                Problem::conflict(format!("That {field} is already taken."))
            }
            // Also what a caller who may not see the row gets: existence is not revealed.
            StoreError::NotFound => Problem::not_found(format!("No such {what}.")),
            StoreError::Db(e) => Problem::internal(log, &format!("{e:#}")),
        };
        p.request(request_id)
    }
}

/// Whether a database error is a unique-constraint violation (SQLite or PostgreSQL).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Current UTC time as stored and sent: RFC 3339 with microseconds, so text order is
/// time order.
pub fn now_text() -> String {
    time_text(chrono::Utc::now())
}

/// A time as stored and sent (see `now_text`).
pub fn time_text(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("stored time {text:?} is not RFC 3339"))?
        .with_timezone(&chrono::Utc))
}

/// The UUID stored as text in column `name` (ids are written by us, so a bad one is a
/// 500, never the caller's fault).
pub fn uuid_column(row: &AnyRow, name: &str) -> Result<uuid::Uuid, StoreError> {
    use sqlx::Row;
    let text: String = row.try_get(name)?;
    Ok(uuid::Uuid::parse_str(&text).with_context(|| format!("stored {name} {text:?}"))?)
}

/// The time stored as RFC 3339 text in column `name`.
pub fn time_column(row: &AnyRow, name: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    use sqlx::Row;
    Ok(parse_time(&row.try_get::<String, _>(name)?)?)
}

#[cfg(test)]
mod tests {
    use super::{redact, Db, Synchronous};

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/users.db"), "sqlite://data/users.db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://u:p@h/db?sslpassword=k"),
            "postgres://u:***@h/db?sslpassword=***"
        );
        assert_eq!(
            redact("nats://user:pw@127.0.0.1:4222"),
            "nats://user:***@127.0.0.1:4222"
        );
        assert_eq!(
            redact("nats://s3cr3t-token@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert!(!redact("postgres://u:p@ss word@h").contains("ss word"));
    }

    #[tokio::test]
    async fn sqlite_syncs_every_commit_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        for (setting, expected) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
            let url = format!("sqlite://{}/s{expected}.db?mode=rwc", dir.path().display());
            let db = Db::connect(&url, 3, setting, &crate::tasks::MIGRATOR)
                .await
                .unwrap();
            // Every connection of the pool, not just the first: hold them all at once.
            let mut held = Vec::new();
            for _ in 0..3 {
                let mut conn = db.pool.acquire().await.unwrap();
                let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(level, expected, "{setting:?}");
                held.push(conn);
            }
        }
        assert_eq!(Synchronous::default(), Synchronous::Full);
    }
}
