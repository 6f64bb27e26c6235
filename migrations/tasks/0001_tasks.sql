-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUIDv7 text ids,
-- RFC 3339 text times, booleans as INTEGER 0/1.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    done INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Every query is "this owner's tasks, in id order".
CREATE INDEX tasks_owner_id ON tasks (owner_id, id);
