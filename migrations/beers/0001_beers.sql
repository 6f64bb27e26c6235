-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUIDv7 text ids,
-- RFC 3339 text times, money as integer cents.
CREATE TABLE beers (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- Lower-cased name, for the case-insensitive `q` filter.
    name_key TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents BETWEEN 1 AND 99999999),
    style TEXT,
    image_url TEXT,
    -- Bumped by every change; guards If-Match updates against a concurrent writer.
    version BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
