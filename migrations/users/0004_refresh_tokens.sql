-- Refresh tokens: one row per token ever issued, stored as the SHA-256 of the secret
-- (hex), so a copy of the database cannot be used to log in. Tokens from one login form
-- a family (its session); exchanging a token marks it rotated and adds its successor,
-- and presenting a rotated token again revokes the whole family (it was copied).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- the token this one replaced (NULL for the family's first, made by a login)
    parent_hash TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
