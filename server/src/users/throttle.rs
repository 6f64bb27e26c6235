//! Throttling failed logins, with two counters per attempt: one per (account, client
//! address), which locks after a few failures, and one per account from any address,
//! with a much higher limit. So a guesser is slowed down at their own address without
//! locking the owner out from theirs, and guessing from many addresses still ends.
//!
//! An attempt is counted as a failure *before* its password is checked, in one atomic
//! upsert that also refuses it while the key is locked: however many guesses arrive
//! at once, at most `free` of them reach the password check before the lock. A
//! successful login clears both counters. The account is the user id whatever name was
//! typed (username or email), and the typed name when no account has it, so unknown
//! names are throttled alike and reveal nothing.

use crate::runtime::config::Config;
use crate::runtime::db::{now_text, StoreError};
use crate::runtime::Db;
use std::net::IpAddr;

/// How many failures in a row lock a key.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From one address, before that address is locked out of an account.
    pub per_address: i64,
    /// From any addresses, before the account itself is locked.
    pub per_account: i64,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Limits {
        // At least one free attempt: a limit of 0 would lock every account for good.
        Limits {
            per_address: i64::from(config.login_failures_per_address.max(1)),
            per_account: i64::from(config.login_failures_per_account.max(1)),
        }
    }
}
/// The lock after the failure that reaches a limit is 30 s, doubling with each further
/// failure (one is let through each time a lock runs out), up to 15 minutes.
pub const MAX_LOCK_SECS: i64 = 15 * 60;

/// The keys one attempt counts against, with their limits: (account @ address, account).
pub fn keys(limits: Limits, account: &str, address: IpAddr) -> [(String, i64); 2] {
    [
        (format!("{account}@{address}"), limits.per_address),
        (account.to_string(), limits.per_account),
    ]
}

/// Counts an attempt against `key` unless it is locked; the seconds left on the lock
/// when it is. The failure that reaches `free` sets the lock in the same statement.
pub async fn reserve(db: &Db, key: &str, free: i64, now: i64) -> Result<Result<(), i64>, StoreError> {
    // The lock length for the n-th failure (n >= free), portable between SQLite and
    // PostgreSQL: 30 s << (n - free), at most MAX_LOCK_SECS.
    let counted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, 0, $5) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = login_throttle.failures + 1, \
           locked_until = CASE WHEN login_throttle.failures + 1 < $3 THEN 0 \
             ELSE $2 + CASE login_throttle.failures + 1 - $3 \
               WHEN 0 THEN 30 WHEN 1 THEN 60 WHEN 2 THEN 120 WHEN 3 THEN 240 WHEN 4 THEN 480 \
               ELSE $4 END END, \
           updated_at = $5 \
         WHERE login_throttle.locked_until <= $2 \
         RETURNING failures",
    )
    .bind(key)
    .bind(now)
    .bind(free)
    .bind(MAX_LOCK_SECS)
    .bind(now_text())
    .fetch_optional(&db.pool)
    .await?;
    if counted.is_some() {
        return Ok(Ok(()));
    }
    let until: Option<i64> =
        sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(&db.pool)
            .await?;
    Ok(Err(until.map_or(1, |until| (until - now).max(1))))
}

/// Forgets the failures counted against `key` (after a successful login).
pub async fn clear(db: &Db, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Counters are forgotten a day after their last failure: "in a row" has to end
/// somewhere, and rows for every name anyone typed must not pile up. Longer than any
/// lock, so a locked key is never forgotten early.
pub const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
