-- Failed-login throttling (users/throttle.rs) replaces login_failures: counters per
-- (account, client address) and per account, reserved before a password is checked.
-- The lock is in Unix seconds so that it can be computed inside the one atomic upsert;
-- the last failure is RFC 3339 text like every other time, for retention.
DROP TABLE login_failures;
CREATE TABLE login_throttle (
    -- "<account>" or "<account>@<client address>"; <account> is the user id, or the
    -- name as typed (lower-cased) when no account has it.
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
-- Retention finds idle rows by age.
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
