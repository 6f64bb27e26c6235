-- Failed-login throttling (users/throttle.rs) replaces login_failures: counters per
-- (account, client address) and per account, reserved before a password is checked.
-- Times are Unix seconds so the lock can be computed inside the one atomic upsert.
DROP TABLE login_failures;
CREATE TABLE login_throttle (
    -- "<account>" or "<account>@<client address>"; <account> is the user id, or the
    -- name as typed (lower-cased) when no account has it.
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Pruning finds idle rows by age.
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
