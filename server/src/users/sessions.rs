//! Refresh tokens: the revocable half of a login. A login starts a session (a family of
//! refresh tokens); each refresh token is exchanged once for a new access token and its
//! successor. Only SHA-256 digests are stored: the secrets are 256 random bits, so a
//! slow hash would add nothing, and a copy of the table logs nobody in. Presenting a token
//! that was already exchanged means two parties hold it, so the whole session ends.

use crate::runtime::db::{now_text, time_text, uuid_column, Db, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;
use taproom_client::users::types;
use uuid::Uuid;

/// A refresh token just issued: the secret (returned once, never stored) and its lifetime.
pub struct Issued {
    pub token: String,
    pub expires_in: u32,
}

/// Why a refresh token was refused (each is a 401).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Expired,
    Revoked,
    /// Used before: the session has now ended.
    Reused,
}

impl Refused {
    pub fn detail(&self) -> &'static str {
        match self {
            Refused::Unknown => "The refresh token is not valid.",
            Refused::Expired => "The refresh token has expired; log in again.",
            Refused::Revoked => "The session has ended; log in again.",
            Refused::Reused => {
                "The refresh token was already used, so the session has ended; log in again."
            }
        }
    }
}

fn digest(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

fn new_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn expiry(ttl_secs: u64) -> (String, u32) {
    // No session outlives a century, whatever the setting says (and no overflow).
    let secs = ttl_secs.min(100 * 365 * 24 * 3600);
    let at = chrono::Utc::now() + chrono::Duration::seconds(secs as i64);
    (time_text(at), u32::try_from(secs).unwrap_or(u32::MAX))
}

/// Inserts a new token of `family` (its first when `parent` is `None`).
async fn insert<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    executor: E,
    user_id: Uuid,
    family: &str,
    parent: Option<&str>,
    ttl_secs: u64,
) -> Result<Issued, StoreError> {
    let token = new_secret();
    let (expires_at, expires_in) = expiry(ttl_secs);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, parent_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(digest(&token))
    .bind(family)
    .bind(user_id.to_string())
    .bind(parent)
    .bind(now_text())
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(Issued { token, expires_in })
}

/// Starts a session for `user_id` (a login): its first refresh token.
pub async fn start(db: &Db, user_id: Uuid, ttl_secs: u64) -> Result<Issued, StoreError> {
    insert(&db.pool, user_id, &Uuid::now_v7().to_string(), None, ttl_secs).await
}

/// Exchanges `token` for its successor: the account's id and current role, and the new
/// token. A token is exchanged at most once, even by concurrent requests.
pub async fn rotate(
    db: &Db,
    token: &str,
    ttl_secs: u64,
) -> Result<Result<(Uuid, types::Role, Issued), Refused>, StoreError> {
    let hash = digest(token);
    let now = now_text();
    let mut tx = db.pool.begin().await?;
    // The conditional update is the claim: of two requests with one token, one wins.
    let claimed = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = $2 \
         WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
         RETURNING family_id, user_id",
    )
    .bind(&hash)
    .bind(&now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(claimed) = claimed else {
        tx.rollback().await?;
        return Ok(Err(refusal(db, &hash, &now).await?));
    };
    let family: String = claimed.try_get("family_id")?;
    let user_id = uuid_column(&claimed, "user_id")?;
    // The role as stored now, not as when the session began.
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(user_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(role) = role else {
        tx.rollback().await?;
        forget(db, user_id).await?;
        return Ok(Err(Refused::Revoked));
    };
    let role = role
        .parse()
        .map_err(|e| anyhow::anyhow!("stored role {role:?}: {e}"))?;
    let issued = insert(&mut *tx, user_id, &family, Some(&hash), ttl_secs).await?;
    tx.commit().await?;
    Ok(Ok((user_id, role, issued)))
}

/// Why the token with digest `hash` could not be claimed; a reused one ends its session.
async fn refusal(db: &Db, hash: &str, now: &str) -> Result<Refused, StoreError> {
    let row = sqlx::query(
        "SELECT family_id, rotated_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(Refused::Unknown);
    };
    let revoked: Option<String> = row.try_get("revoked_at")?;
    let rotated: Option<String> = row.try_get("rotated_at")?;
    let expires_at: String = row.try_get("expires_at")?;
    Ok(if revoked.is_some() {
        Refused::Revoked
    } else if rotated.is_some() {
        end_family(db, &row.try_get::<String, _>("family_id")?).await?;
        Refused::Reused
    } else if expires_at.as_str() <= now {
        Refused::Expired
    } else {
        // Claimed by a concurrent request between the two statements: used.
        Refused::Reused
    })
}

async fn end_family(db: &Db, family: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(now_text())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Ends the session `token` belongs to (logout), used or not; `false` for an unknown token.
pub async fn end(db: &Db, token: &str) -> Result<bool, StoreError> {
    let family: Option<String> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_optional(&db.pool)
            .await?;
    match family {
        Some(family) => end_family(db, &family).await.map(|()| true),
        None => Ok(false),
    }
}

/// Ends every session of `user_id` (new password or role).
pub async fn end_all(db: &Db, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id.to_string())
    .bind(now_text())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Removes every refresh token of `user_id` (the account is gone).
pub async fn forget(db: &Db, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(user_id.to_string())
        .execute(&db.pool)
        .await?;
    Ok(())
}
