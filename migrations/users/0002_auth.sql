-- Ed25519 keys that sign access tokens. The newest signs; all are published in the JWKS
-- so tokens signed by an older key stay valid until they expire.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_key TEXT NOT NULL, -- PKCS#8 DER, base64
    public_key TEXT NOT NULL,  -- raw 32 bytes, base64url (the JWK's x)
    created_at TEXT NOT NULL
);

-- Consecutive failed logins per account identifier (as typed, lower-cased), known or
-- not, so throttling reveals nothing about which accounts exist.
CREATE TABLE login_failures (
    account TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    locked_until TEXT
);
