-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUIDv7 text ids,
-- RFC 3339 text times, booleans as 0/1.
CREATE TABLE exercises (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    statement TEXT NOT NULL,
    language TEXT NOT NULL,
    starter_code TEXT,
    -- Hidden from users: only the sandboxed harness and admins see it.
    test_code TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Submissions are also the evaluation queue: `pending` ones wait for a worker, which
-- claims one (`running`, `claimed_by`, `claimed_until`) the way an outbox relay claims
-- events, so a queue survives restarts and a claim of a worker that died expires.
CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    exercise_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    language TEXT NOT NULL,
    code TEXT NOT NULL,
    status TEXT NOT NULL,
    -- JSON list of per-test results.
    results TEXT,
    output TEXT,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT,
    claimed_until TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX submissions_owner ON submissions (owner_id, exercise_id, id);
CREATE INDEX submissions_queue ON submissions (status, id);

-- Events written in the same transaction as a submission's result, delivered at least
-- once by the relay (runtime::outbox).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until TEXT,
    delivered_at TEXT,
    last_error TEXT
);

CREATE INDEX outbox_pending ON outbox (delivered_at, next_attempt_at);
