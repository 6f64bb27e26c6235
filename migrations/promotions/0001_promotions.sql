-- Portable between SQLite and PostgreSQL (see docs/architecture.md).
CREATE TABLE promotions (
    code TEXT PRIMARY KEY,
    percent_off INTEGER NOT NULL CHECK (percent_off BETWEEN 1 AND 100),
    max_uses_per_user INTEGER NOT NULL CHECK (max_uses_per_user >= 1),
    created_at TEXT NOT NULL
);

-- Uses of a code by a user, counted from order.placed events.
CREATE TABLE promotion_uses (
    code TEXT NOT NULL,
    user_id TEXT NOT NULL,
    uses BIGINT NOT NULL,
    PRIMARY KEY (code, user_id)
);

-- Every event taken, written in the same transaction as its effect: a redelivered event
-- finds its id here and changes nothing.
CREATE TABLE processed_events (
    id TEXT PRIMARY KEY,
    processed_at TEXT NOT NULL
);
