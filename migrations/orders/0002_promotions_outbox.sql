-- Promo codes at checkout, and the transactional outbox of events for other services.
ALTER TABLE orders ADD COLUMN promo_code TEXT;

-- Uses of each promo code by each user, counted here at checkout (in the checkout's
-- transaction), so the per-user limit holds even while events are still undelivered.
CREATE TABLE promo_uses (
    user_id TEXT NOT NULL,
    code TEXT NOT NULL,
    uses BIGINT NOT NULL,
    PRIMARY KEY (user_id, code)
);

-- Events written in the same transaction as the change they describe, delivered at least
-- once by the relay (runtime::outbox).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    -- A relay holds an event while sending it; an expired claim may be taken over.
    claimed_by TEXT,
    claimed_until TEXT,
    delivered_at TEXT,
    last_error TEXT
);

CREATE INDEX outbox_pending ON outbox (delivered_at, next_attempt_at);
