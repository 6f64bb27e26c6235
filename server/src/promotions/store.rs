//! The promotions database. An event's effect (a use counted) and the record that the
//! event was taken are written in one transaction, so each event counts exactly once
//! however many times it is delivered.

use crate::runtime::db::{is_unique_violation, now_text, time_column, Db, StoreError};
use sqlx::Row;
use taproom_client::promotions::types;
use uuid::Uuid;

fn to_promotion(row: &sqlx::any::AnyRow) -> Result<types::Promotion, StoreError> {
    let count = |name: &str| -> Result<u32, StoreError> {
        let n: i64 = row.try_get(name)?;
        Ok(u32::try_from(n).map_err(|e| anyhow::anyhow!("stored {name}: {e}"))?)
    };
    Ok(types::Promotion {
        code: row.try_get("code")?,
        percent_off: count("percent_off")?,
        max_uses_per_user: count("max_uses_per_user")?,
        created_at: time_column(row, "created_at")?,
    })
}

pub async fn create(
    db: &Db,
    code: &str,
    percent_off: u32,
    max_uses_per_user: u32,
) -> Result<types::Promotion, StoreError> {
    let row = sqlx::query(
        "INSERT INTO promotions (code, percent_off, max_uses_per_user, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING code, percent_off, max_uses_per_user, created_at",
    )
    .bind(code)
    .bind(i64::from(percent_off))
    .bind(i64::from(max_uses_per_user))
    .bind(now_text())
    .fetch_one(&db.pool)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Taken("code")
        } else {
            e.into()
        }
    })?;
    to_promotion(&row)
}

pub async fn get(db: &Db, code: &str) -> Result<types::Promotion, StoreError> {
    let row = sqlx::query(
        "SELECT code, percent_off, max_uses_per_user, created_at FROM promotions WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_promotion)
        .unwrap_or(Err(StoreError::NotFound))
}

/// How many uses of `code` by `user` have been counted.
pub async fn uses(db: &Db, code: &str, user: Uuid) -> Result<u32, StoreError> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT uses FROM promotion_uses WHERE code = $1 AND user_id = $2")
            .bind(code)
            .bind(user.to_string())
            .fetch_optional(&db.pool)
            .await?;
    Ok(u32::try_from(n.unwrap_or(0)).map_err(|e| anyhow::anyhow!("stored uses: {e}"))?)
}

/// Takes an event: counts the use it reports, unless this event was taken before.
/// Returns whether it was a duplicate.
pub async fn take_event(db: &Db, event: &types::Event) -> Result<bool, StoreError> {
    let mut tx = db.pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO processed_events (id, processed_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.id.to_string())
    .bind(now_text())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        db.metrics.events_duplicates.inc();
        return Ok(true);
    }
    if let Some(code) = &event.order.promo_code {
        sqlx::query(
            "INSERT INTO promotion_uses (code, user_id, uses) VALUES ($1, $2, 1) \
             ON CONFLICT (code, user_id) DO UPDATE SET uses = promotion_uses.uses + 1",
        )
        .bind(code.to_string())
        .bind(event.order.user_id.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    db.metrics.events_consumed.inc();
    Ok(false)
}
