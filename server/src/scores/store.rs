//! The scores database. Every query is scoped to the owner: another user's
//! score is indistinguishable from a missing one.

use crate::runtime::db::{now_text, time_column, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use sqlx::Row;
use taproom_client::scores::types;
use uuid::Uuid;

// A macro, not a const, so that queries stay string literals (sqlx refuses dynamic SQL).
macro_rules! columns {
    () => {
        "id, title, notes, created_at, updated_at"
    };
}

fn to_score(row: &sqlx::any::AnyRow) -> Result<types::Score, StoreError> {
    Ok(types::Score {
        id: uuid_column(row, "id")?,
        title: row.try_get("title")?,
        notes: row.try_get("notes")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

pub async fn create(
    db: &Db,
    owner: Uuid,
    title: &str,
    notes: Option<&str>,
) -> Result<types::Score, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO scores (id, owner_id, title, notes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(owner.to_string())
    .bind(title)
    .bind(notes)
    .bind(now_text())
    .fetch_one(&db.pool)
    .await?;
    to_score(&row)
}

pub async fn get(db: &Db, owner: Uuid, id: Uuid) -> Result<types::Score, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM scores WHERE id = $1 AND owner_id = $2"
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_score)
        .unwrap_or(Err(StoreError::NotFound))
}

/// The owner's scores of one page `window`, in id order.
pub async fn list(
    db: &Db,
    owner: Uuid,
    window: &Window,
) -> Result<Vec<types::Score>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM scores WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(owner.to_string())
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_score).collect()
}

/// Fields to change; `None` keeps the value. `notes: Some(None)` removes them.
pub struct Changes {
    pub title: Option<String>,
    pub notes: Option<Option<String>>,
}

pub async fn update(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    changes: Changes,
) -> Result<types::Score, StoreError> {
    // One statement: concurrent changes of different fields do not undo each other.
    let row = sqlx::query(concat!(
        "UPDATE scores SET title = COALESCE($3, title), \
           notes = CASE WHEN $4 = 1 THEN $5 ELSE notes END, updated_at = $6 \
         WHERE id = $1 AND owner_id = $2 RETURNING ",
        columns!()
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .bind(&changes.title)
    .bind(i32::from(changes.notes.is_some()))
    .bind(changes.notes.clone().flatten())
    .bind(now_text())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_score)
        .unwrap_or(Err(StoreError::NotFound))
}

pub async fn delete(db: &Db, owner: Uuid, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM scores WHERE id = $1 AND owner_id = $2")
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
