-- Signing keys are stored sealed under a key-encryption key the database never sees
-- (AES-256-GCM, the kid as associated data). Rows from before keep their plain key in
-- private_key until the service seals them at start-up.
-- `active` is 1 on the one key that signs and NULL on every other: a unique column takes
-- any number of NULLs but one 1, so instances starting together, or rotations running at
-- once, cannot make two signing keys. A key that stopped signing has retired_at and stays
-- published until every token it signed has expired.
-- The table is rebuilt because SQLite cannot drop NOT NULL from a column.
CREATE TABLE signing_keys_v5 (
    kid TEXT PRIMARY KEY,
    private_key TEXT,        -- PKCS#8 DER, base64, plain: only rows from before this migration
    sealed_private_key TEXT, -- v1:<base64 of nonce, ciphertext and tag>
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    active INTEGER UNIQUE CHECK (active = 1),
    retired_at TEXT,
    CHECK (private_key IS NOT NULL OR sealed_private_key IS NOT NULL)
);
INSERT INTO signing_keys_v5 (kid, private_key, public_key, created_at)
    SELECT kid, private_key, public_key, created_at FROM signing_keys;
-- The key that signed until now (the newest) goes on signing; when the others stopped is
-- not known, so start-up stamps them retired then, keeping them a whole token lifetime.
UPDATE signing_keys_v5 SET active = 1
    WHERE kid = (SELECT kid FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1);
DROP TABLE signing_keys;
ALTER TABLE signing_keys_v5 RENAME TO signing_keys;
