-- Portable between SQLite and PostgreSQL (see docs/architecture.md): UUIDv7 text ids,
-- RFC 3339 text times, money as integer cents.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    discount_cents BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);

-- "This user's orders, in id order".
CREATE INDEX orders_user_id ON orders (user_id, id);

-- A snapshot of the beer (sku, name, price) as it was when first added.
CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    beer_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents > 0),
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    -- Insertion order (a UUIDv7, so it sorts by time).
    added_id TEXT NOT NULL,
    PRIMARY KEY (order_id, beer_id)
);

-- The first successful answer to each (user, Idempotency-Key), replayed on retries.
CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    -- Hash of what the request asked (order and body): the same key for another request is refused.
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
