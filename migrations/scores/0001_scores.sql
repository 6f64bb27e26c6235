-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUIDv7 text ids,
-- RFC 3339 text times.
CREATE TABLE scores (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    title TEXT NOT NULL,
    notes TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Every query is "this owner's scores, in id order".
CREATE INDEX scores_owner_id ON scores (owner_id, id);
