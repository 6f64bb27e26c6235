//! Passwords: argon2id with the argon2 crate's defaults (OWASP's recommended parameters),
//! hashed and verified off the async workers because each takes tens of milliseconds on
//! purpose. The only place that touches argon2.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::password_hash::SaltString;
use std::sync::OnceLock;

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// A new salted hash of `password`, in PHC string form.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(password.as_bytes())).await?
}

/// Whether `password` matches `hash` (a hash that cannot be read matches nothing).
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await?)
}

/// A hash of a random secret, to verify against when an account does not exist, so that
/// refusing an unknown account costs as much as refusing a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default())
}
