//! The users database: plain SQL, one text for SQLite and PostgreSQL.

use crate::runtime::db::{is_unique_violation, now_text, time_column, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use sqlx::Row;
use taproom_client::users::types;
use uuid::Uuid;

pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Fields to change; `None` keeps the current value. For names, `Some(None)` clears.
#[derive(Default)]
pub struct Changes {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub role: Option<types::Role>,
}

// A macro, not a const, so that queries stay string literals (sqlx refuses dynamic SQL).
macro_rules! columns {
    () => {
        "id, username, email, first_name, last_name, role, created_at, updated_at"
    };
}

fn to_user(row: &sqlx::any::AnyRow) -> Result<types::User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(types::User {
        id: uuid_column(row, "id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        role: role
            .parse()
            .map_err(|e| anyhow::anyhow!("stored role {role:?}: {e}"))?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

/// Which unique field a (possibly just-failed) write collides with, ignoring `except`.
async fn taken_field(
    db: &Db,
    username: Option<&str>,
    email: Option<&str>,
    except: Option<Uuid>,
) -> Result<Option<&'static str>, StoreError> {
    let except = except.map(|u| u.to_string()).unwrap_or_default();
    let checks = [
        (
            "username",
            username,
            "SELECT COUNT(*) FROM users WHERE username_key = $1 AND id <> $2",
        ),
        (
            "email",
            email,
            "SELECT COUNT(*) FROM users WHERE email_key = $1 AND id <> $2",
        ),
    ];
    for (field, value, sql) in checks {
        let Some(value) = value else { continue };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(value.to_lowercase())
            .bind(&except)
            .fetch_one(&db.pool)
            .await?;
        if n > 0 {
            return Ok(Some(field));
        }
    }
    Ok(None)
}

pub async fn create(db: &Db, new: NewUser) -> Result<types::User, StoreError> {
    create_with_role(db, new, types::Role::User).await
}

pub async fn create_with_role(
    db: &Db,
    new: NewUser,
    role: types::Role,
) -> Result<types::User, StoreError> {
    let id = Uuid::now_v7();
    let now = now_text();
    let result = sqlx::query(concat!("INSERT INTO users (id, username, username_key, email, email_key, password_hash, first_name, last_name, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9) RETURNING ", columns!(), ""))
    .bind(id.to_string())
    .bind(&new.username)
    .bind(new.username.to_lowercase())
    .bind(&new.email)
    .bind(new.email.to_lowercase())
    .bind(&new.password_hash)
    .bind(&new.first_name)
    .bind(&new.last_name)
    .bind(&now)
    .bind(role.to_string())
    .fetch_one(&db.pool)
    .await;
    match result {
        Ok(row) => to_user(&row),
        Err(e) if is_unique_violation(&e) => {
            let field = taken_field(db, Some(&new.username), Some(&new.email), None).await?;
            Err(StoreError::Taken(field.unwrap_or("username")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &Db, id: Uuid) -> Result<types::User, StoreError> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM users WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref()
        .map(to_user)
        .unwrap_or(Err(StoreError::NotFound))
}

/// The stored role of `id`, or `None` when there is no such account.
pub async fn role(db: &Db, id: Uuid) -> Result<Option<types::Role>, StoreError> {
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    role.map(|r| {
        r.parse()
            .map_err(|e| StoreError::Db(anyhow::anyhow!("stored role {r:?}: {e}")))
    })
    .transpose()
}

/// The users of one page `window`, in id (= creation) order.
pub async fn list(db: &Db, window: &Window) -> Result<Vec<types::User>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_user).collect()
}

pub async fn update(db: &Db, id: Uuid, changes: Changes) -> Result<types::User, StoreError> {
    // COALESCE keeps the stored value for every field not being changed, in one
    // statement, so concurrent partial updates of different fields do not undo each other.
    let result = sqlx::query(concat!(
        "UPDATE users SET \
           username = COALESCE($2, username), username_key = COALESCE($3, username_key), \
           email = COALESCE($4, email), email_key = COALESCE($5, email_key), \
           password_hash = COALESCE($6, password_hash), \
           first_name = CASE WHEN $7 = 1 THEN $8 ELSE first_name END, \
           last_name = CASE WHEN $9 = 1 THEN $10 ELSE last_name END, \
           updated_at = $11, role = COALESCE($12, role) \
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id.to_string())
    .bind(&changes.username)
    .bind(changes.username.as_ref().map(|u| u.to_lowercase()))
    .bind(&changes.email)
    .bind(changes.email.as_ref().map(|e| e.to_lowercase()))
    .bind(&changes.password_hash)
    .bind(i32::from(changes.first_name.is_some()))
    .bind(changes.first_name.clone().flatten())
    .bind(i32::from(changes.last_name.is_some()))
    .bind(changes.last_name.clone().flatten())
    .bind(now_text())
    .bind(changes.role.map(|r| r.to_string()))
    .fetch_optional(&db.pool)
    .await;
    match result {
        Ok(Some(row)) => to_user(&row),
        Ok(None) => Err(StoreError::NotFound),
        Err(e) if is_unique_violation(&e) => {
            let field = taken_field(
                db,
                changes.username.as_deref(),
                changes.email.as_deref(),
                Some(id),
            )
            .await?;
            Err(StoreError::Taken(field.unwrap_or("username")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id.to_string())
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The id, role and password hash of the account a login names (username or email,
/// case-insensitively).
pub async fn credentials(
    db: &Db,
    login: &str,
) -> Result<Option<(Uuid, types::Role, String)>, StoreError> {
    let key = login.to_lowercase();
    let row = sqlx::query(
        "SELECT id, role, password_hash FROM users WHERE username_key = $1 OR email_key = $1",
    )
    .bind(&key)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    Ok(Some((
        uuid_column(&row, "id")?,
        role.parse()
            .map_err(|e| anyhow::anyhow!("stored role {role:?}: {e}"))?,
        row.try_get("password_hash")?,
    )))
}

/// The key that signs: (kid, sealed private key). `None` before the first start.
pub async fn active_signing_key(db: &Db) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT kid, sealed_private_key FROM signing_keys WHERE active = 1 AND sealed_private_key IS NOT NULL",
    )
    .fetch_optional(&db.pool)
    .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("kid")?, r.try_get("sealed_private_key")?)),
        None => None,
    })
}

/// The published keys, (kid, public x base64url), newest first: the signing key and every
/// key retired after `retired_after` (older ones signed only tokens expired by now).
pub async fn published_keys(
    db: &Db,
    retired_after: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT kid, public_key FROM signing_keys \
         WHERE active = 1 OR retired_at IS NULL OR retired_at > $1 \
         ORDER BY created_at DESC, kid DESC",
    )
    .bind(retired_after)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("kid")?, r.try_get("public_key")?)))
        .collect()
}

/// Makes `kid` the signing key unless there is one already (another instance starting at
/// the same time may have made it first): the unique `active` column decides.
pub async fn insert_first_signing_key(
    db: &Db,
    kid: &str,
    sealed: &str,
    public_key: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, sealed_private_key, public_key, created_at, active) \
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT DO NOTHING",
    )
    .bind(kid)
    .bind(sealed)
    .bind(public_key)
    .bind(now_text())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Keys still stored in plain text (from before sealing): (kid, PKCS#8 base64).
pub async fn plain_signing_keys(db: &Db) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT kid, private_key FROM signing_keys WHERE private_key IS NOT NULL")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("kid")?, r.try_get("private_key")?)))
        .collect()
}

/// Replaces a plain key by its sealed form (a no-op if another instance did it first).
pub async fn seal_signing_key(db: &Db, kid: &str, sealed: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE signing_keys SET sealed_private_key = $2, private_key = NULL \
         WHERE kid = $1 AND private_key IS NOT NULL",
    )
    .bind(kid)
    .bind(sealed)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Dates retired keys whose retirement was not recorded (from before rotation existed)
/// `now`, and deletes keys retired before `retired_before`; how many were deleted.
pub async fn tidy_signing_keys(
    db: &Db,
    now: &str,
    retired_before: &str,
) -> Result<u64, StoreError> {
    sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE active IS NULL AND retired_at IS NULL")
        .bind(now)
        .execute(&db.pool)
        .await?;
    let deleted = sqlx::query(
        "DELETE FROM signing_keys WHERE active IS NULL AND retired_at IS NOT NULL AND retired_at < $1",
    )
    .bind(retired_before)
    .execute(&db.pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Makes `kid` the signing key, retiring the current one at `now` (or deleting every other
/// key when `revoke`): the kids retired or deleted. One transaction, so there is always
/// exactly one signing key; a rotation racing this one fails on the unique `active`.
pub async fn rotate_signing_key(
    db: &Db,
    kid: &str,
    sealed: &str,
    public_key: &str,
    now: &str,
    revoke: bool,
) -> Result<Vec<String>, StoreError> {
    let mut tx = db.pool.begin().await?;
    // Taking the write lock first (SQLite) / the row lock (PostgreSQL) orders rotations.
    sqlx::query("UPDATE signing_keys SET active = NULL, retired_at = $1 WHERE active = 1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let old: Vec<String> = if revoke {
        let rows = sqlx::query("SELECT kid FROM signing_keys WHERE active IS NULL")
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM signing_keys WHERE active IS NULL")
            .execute(&mut *tx)
            .await?;
        rows.iter().map(|r| r.try_get("kid")).collect::<Result<_, _>>()?
    } else {
        let rows = sqlx::query("SELECT kid FROM signing_keys WHERE retired_at = $1")
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        rows.iter().map(|r| r.try_get("kid")).collect::<Result<_, _>>()?
    };
    sqlx::query(
        "INSERT INTO signing_keys (kid, sealed_private_key, public_key, created_at, active) \
         VALUES ($1, $2, $3, $4, 1)",
    )
    .bind(kid)
    .bind(sealed)
    .bind(public_key)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Db(anyhow::anyhow!(
                "another key rotation ran at the same time; run it again"
            ))
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    Ok(old)
}
