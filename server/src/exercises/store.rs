//! The exercises database. Every query is scoped to the owner: another user's
//! exercise is indistinguishable from a missing one.

use crate::runtime::db::{now_text, time_column, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use sqlx::Row;
use taproom_client::exercises::types;
use uuid::Uuid;

// A macro, not a const, so that queries stay string literals (sqlx refuses dynamic SQL).
macro_rules! columns {
    () => {
        "id, title, notes, created_at, updated_at"
    };
}

fn to_exercise(row: &sqlx::any::AnyRow) -> Result<types::Exercise, StoreError> {
    Ok(types::Exercise {
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
) -> Result<types::Exercise, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO exercises (id, owner_id, title, notes, created_at, updated_at) \
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
    to_exercise(&row)
}

pub async fn get(db: &Db, owner: Uuid, id: Uuid) -> Result<types::Exercise, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM exercises WHERE id = $1 AND owner_id = $2"
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_exercise)
        .unwrap_or(Err(StoreError::NotFound))
}

/// The owner's exercises of one page `window`, in id order.
pub async fn list(
    db: &Db,
    owner: Uuid,
    window: &Window,
) -> Result<Vec<types::Exercise>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM exercises WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(owner.to_string())
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_exercise).collect()
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
) -> Result<types::Exercise, StoreError> {
    // One statement: concurrent changes of different fields do not undo each other.
    let row = sqlx::query(concat!(
        "UPDATE exercises SET title = COALESCE($3, title), \
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
        .map(to_exercise)
        .unwrap_or(Err(StoreError::NotFound))
}

pub async fn delete(db: &Db, owner: Uuid, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM exercises WHERE id = $1 AND owner_id = $2")
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
