-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUID text ids,
-- RFC 3339 text times.
-- Each user's results per exercise, counted from `submission.graded` events. `best_rank`
-- orders results: a pass above any failure, then more passed tests.
CREATE TABLE scores (
    user_id TEXT NOT NULL,
    exercise_id TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    best_status TEXT NOT NULL,
    best_passed_tests BIGINT NOT NULL,
    best_total_tests BIGINT NOT NULL,
    best_rank BIGINT NOT NULL,
    first_passed_at TEXT,
    last_attempt_at TEXT NOT NULL,
    PRIMARY KEY (user_id, exercise_id)
);

-- An admin's view: one exercise's scores in user order.
CREATE INDEX scores_exercise ON scores (exercise_id, user_id);

-- Ids of the events taken, written in the same transaction as their effect, so that
-- each event counts once however often it is delivered; pruned after
-- EVENT_DEDUP_RETENTION_SECS (runtime::retention).
CREATE TABLE processed_events (
    id TEXT PRIMARY KEY,
    processed_at TEXT NOT NULL
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
