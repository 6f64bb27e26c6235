//! The catalogue database. Prices are integer cents; `version` counts changes so that a
//! conditional write (If-Match) cannot overwrite a change made since the read.

use crate::runtime::db::{is_unique_violation, now_text, time_column, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use crate::runtime::money::format_cents;
use sqlx::Row;
use taproom_client::beers::types;
use uuid::Uuid;

// A macro, not a const, so that queries stay string literals (sqlx refuses dynamic SQL).
macro_rules! columns {
    () => {
        "id, sku, name, price_cents, style, image_url, version, created_at, updated_at"
    };
}

/// A beer as stored: its representation and its change counter.
pub struct Stored {
    pub beer: types::Beer,
    pub version: i64,
}

fn to_stored(row: &sqlx::any::AnyRow) -> Result<Stored, StoreError> {
    Ok(Stored {
        beer: types::Beer {
            id: uuid_column(row, "id")?,
            sku: row.try_get("sku")?,
            name: row.try_get("name")?,
            price: format_cents(row.try_get("price_cents")?),
            style: row.try_get("style")?,
            image_url: row.try_get("image_url")?,
            created_at: time_column(row, "created_at")?,
            updated_at: time_column(row, "updated_at")?,
        },
        version: row.try_get("version")?,
    })
}

fn taken(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Taken("sku")
    } else {
        e.into()
    }
}

pub struct NewBeer {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub style: Option<String>,
    pub image_url: Option<String>,
}

pub async fn create(db: &Db, new: NewBeer) -> Result<types::Beer, StoreError> {
    let now = now_text();
    let row = sqlx::query(concat!(
        "INSERT INTO beers (id, sku, name, name_key, price_cents, style, image_url, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(&new.sku)
    .bind(&new.name)
    .bind(new.name.to_lowercase())
    .bind(new.price_cents)
    .bind(&new.style)
    .bind(&new.image_url)
    .bind(&now)
    .fetch_one(&db.pool)
    .await
    .map_err(taken)?;
    Ok(to_stored(&row)?.beer)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Stored, StoreError> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM beers WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref()
        .map(to_stored)
        .unwrap_or(Err(StoreError::NotFound))
}

/// `%`, `_` and `\` in user text match themselves in `LIKE … ESCAPE '\'`.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The beers of one page `window` in id order, those whose name contains `q` (ignoring
/// case) when given.
pub async fn list(
    db: &Db,
    q: Option<&str>,
    window: &Window,
) -> Result<Vec<types::Beer>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM beers WHERE id > $1 AND name_key LIKE $2 ESCAPE '\\' ORDER BY id LIMIT $3"
    ))
    .bind(window.after_text())
    .bind(like_pattern(q.unwrap_or("")))
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| to_stored(r).map(|s| s.beer)).collect()
}

/// Fields to change; `None` keeps the value. `Some(None)` removes an optional one.
#[derive(Default)]
pub struct Changes {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    pub style: Option<Option<String>>,
    pub image_url: Option<Option<String>>,
}

/// Applies `changes`, only if the beer is still at `version` when one is given.
/// `NotFound` when the beer is gone; `Ok(None)` when its version moved on.
pub async fn update(
    db: &Db,
    id: Uuid,
    version: Option<i64>,
    changes: Changes,
) -> Result<Option<Stored>, StoreError> {
    // One statement: concurrent partial updates of different fields do not undo each other.
    let row = sqlx::query(concat!(
        "UPDATE beers SET sku = COALESCE($3, sku), name = COALESCE($4, name), \
           name_key = COALESCE($5, name_key), price_cents = COALESCE($6, price_cents), \
           style = CASE WHEN $7 = 1 THEN $8 ELSE style END, \
           image_url = CASE WHEN $9 = 1 THEN $10 ELSE image_url END, \
           version = version + 1, updated_at = $11 \
         WHERE id = $1 AND ($2 < 0 OR version = $2) RETURNING ",
        columns!()
    ))
    .bind(id.to_string())
    .bind(version.unwrap_or(-1))
    .bind(&changes.sku)
    .bind(&changes.name)
    .bind(changes.name.as_ref().map(|n| n.to_lowercase()))
    .bind(changes.price_cents)
    .bind(i32::from(changes.style.is_some()))
    .bind(changes.style.clone().flatten())
    .bind(i32::from(changes.image_url.is_some()))
    .bind(changes.image_url.clone().flatten())
    .bind(now_text())
    .fetch_optional(&db.pool)
    .await
    .map_err(taken)?;
    match row {
        Some(row) => Ok(Some(to_stored(&row)?)),
        None => stale_or_gone(db, id).await,
    }
}

/// Deletes the beer, only if it is still at `version` when one is given (`Ok(false)`
/// when its version moved on).
pub async fn delete(db: &Db, id: Uuid, version: Option<i64>) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM beers WHERE id = $1 AND ($2 < 0 OR version = $2)")
        .bind(id.to_string())
        .bind(version.unwrap_or(-1))
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    stale_or_gone(db, id).await.map(|_: Option<Stored>| false)
}

/// After a conditional write touched nothing: `NotFound` if the beer is gone, else
/// `Ok(None)` (it changed in between).
async fn stale_or_gone<T>(db: &Db, id: Uuid) -> Result<Option<T>, StoreError> {
    get(db, id).await.map(|_| None)
}
