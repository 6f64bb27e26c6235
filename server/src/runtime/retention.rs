//! Retention: rows that only matter for a while (delivered events, processed event ids,
//! idempotency keys, login failures) are deleted once older than their service's
//! setting, by one periodic task per service. Each service states what to prune as
//! `Rule`s; the task, its batching and its logging are here, once.

use super::db::{time_text, Db};
use anyhow::{Context as _, Result};
use std::time::Duration;

/// One kind of row to forget. `sql` deletes at most `$2` rows older than the cutoff `$1`
/// (an RFC 3339 time, as every time is stored) and is run until it deletes fewer: short
/// statements, so a pass never holds a table's locks for long.
#[derive(Debug, Clone)]
pub struct Rule {
    /// For logs, e.g. `outbox`.
    pub what: &'static str,
    pub sql: &'static str,
    /// How long a row is kept.
    pub keep: Duration,
}

/// Rows per delete statement.
const BATCH: i64 = 1000;

/// One pass: every rule once. Returns how many rows each deleted.
pub async fn prune(db: &Db, rules: &[Rule]) -> Result<Vec<(&'static str, u64)>> {
    let mut done = Vec::with_capacity(rules.len());
    for rule in rules {
        // A retention too long to subtract keeps everything.
        let cutoff = time_text(
            chrono::Duration::from_std(rule.keep)
                .ok()
                .and_then(|keep| chrono::Utc::now().checked_sub_signed(keep))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        );
        let mut total = 0;
        loop {
            let n = sqlx::query(rule.sql)
                .bind(&cutoff)
                .bind(BATCH)
                .execute(&db.pool)
                .await
                .with_context(|| format!("pruning {}", rule.what))?
                .rows_affected();
            total += n;
            if n < BATCH as u64 {
                break;
            }
        }
        done.push((rule.what, total));
    }
    Ok(done)
}

/// The periodic task: a pass at start and then every `every`; stopped when dropped.
pub struct Pruner {
    task: tokio::task::JoinHandle<()>,
}

impl Pruner {
    pub fn spawn(db: Db, rules: Vec<Rule>, every: Duration, log: &slog::Logger) -> Pruner {
        let log = log.new(slog::o!("task" => "retention"));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match prune(&db, &rules).await {
                    Ok(done) => {
                        for (what, n) in done.into_iter().filter(|(_, n)| *n > 0) {
                            slog::info!(log, "pruned old rows"; "what" => what, "rows" => n);
                        }
                    }
                    Err(e) => {
                        slog::warn!(log, "pruning failed; trying again later"; "error" => %format!("{e:#}"))
                    }
                }
            }
        });
        Pruner { task }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.task.abort();
    }
}
