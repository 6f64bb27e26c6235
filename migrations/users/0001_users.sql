-- Portable between SQLite and PostgreSQL: ids are UUIDv7 text (time-ordered, so the
-- primary key doubles as the keyset-pagination order), times are RFC 3339 UTC text.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    -- lower-cased copies: uniqueness ignores case ("Ada" and "ada" are one account)
    username_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
