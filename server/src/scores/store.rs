//! The scores database. An event's effect (an attempt counted, the best result and
//! first pass kept) and the record that the event was taken are written in one
//! transaction, so each event counts exactly once however many times it is delivered;
//! the score itself is one upsert, so concurrent events for one user and exercise
//! cannot lose an attempt.

use crate::runtime::db::{time_column, time_text, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use sqlx::Row;
use taproom_client::scores::types;
use uuid::Uuid;

macro_rules! columns {
    () => {
        "user_id, exercise_id, attempts, best_status, best_passed_tests, best_total_tests, \
         first_passed_at, last_attempt_at"
    };
}

fn to_score(row: &sqlx::any::AnyRow) -> Result<types::Score, StoreError> {
    let count = |name: &str| -> Result<u32, StoreError> {
        let n: i64 = row.try_get(name)?;
        Ok(u32::try_from(n).map_err(|e| anyhow::anyhow!("stored {name}: {e}"))?)
    };
    let status: String = row.try_get("best_status")?;
    let first: Option<String> = row.try_get("first_passed_at")?;
    Ok(types::Score {
        user_id: uuid_column(row, "user_id")?,
        exercise_id: uuid_column(row, "exercise_id")?,
        attempts: count("attempts")?,
        best_status: status
            .parse()
            .map_err(|e| anyhow::anyhow!("stored best_status: {e}"))?,
        best_passed_tests: count("best_passed_tests")?,
        best_total_tests: count("best_total_tests")?,
        first_passed_at: first
            .map(|t| crate::runtime::db::parse_time(&t))
            .transpose()?,
        last_attempt_at: time_column(row, "last_attempt_at")?,
    })
}

/// A user's scores, one page in exercise id order.
pub async fn of_user(
    db: &Db,
    user: Uuid,
    window: &Window,
) -> Result<Vec<types::Score>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM scores WHERE user_id = $1 AND exercise_id > $2 ORDER BY exercise_id LIMIT $3"
    ))
    .bind(user.to_string())
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_score).collect()
}

/// An exercise's scores, one page in user id order.
pub async fn of_exercise(
    db: &Db,
    exercise: Uuid,
    window: &Window,
) -> Result<Vec<types::Score>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM scores WHERE exercise_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3"
    ))
    .bind(exercise.to_string())
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_score).collect()
}

/// Orders results: any pass above any failure, then by tests passed.
fn rank(status: types::Grade, passed_tests: u32) -> i64 {
    let passed = if status == types::Grade::Passed {
        1 << 32
    } else {
        0
    };
    passed + i64::from(passed_tests)
}

/// Takes an event: counts the attempt it reports, unless this event was taken before.
/// Returns whether it was a duplicate.
pub async fn take_event(db: &Db, event: &types::Event) -> Result<bool, StoreError> {
    let mut tx = db.pool.begin().await?;
    if !crate::runtime::inbox::first_time(&mut tx, event.id).await? {
        return Ok(true);
    }
    let graded = &event.submission;
    let at = time_text(event.occurred_at);
    let first_passed = (graded.status == types::Grade::Passed).then(|| at.clone());
    // The best result is replaced only by a better one; the first pass is the earliest
    // (events may arrive out of order).
    sqlx::query(
        "INSERT INTO scores (user_id, exercise_id, attempts, best_status, best_passed_tests, \
           best_total_tests, best_rank, first_passed_at, last_attempt_at) \
         VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id, exercise_id) DO UPDATE SET \
           attempts = scores.attempts + 1, \
           best_status = CASE WHEN excluded.best_rank > scores.best_rank \
             THEN excluded.best_status ELSE scores.best_status END, \
           best_passed_tests = CASE WHEN excluded.best_rank > scores.best_rank \
             THEN excluded.best_passed_tests ELSE scores.best_passed_tests END, \
           best_total_tests = CASE WHEN excluded.best_rank > scores.best_rank \
             THEN excluded.best_total_tests ELSE scores.best_total_tests END, \
           best_rank = CASE WHEN excluded.best_rank > scores.best_rank \
             THEN excluded.best_rank ELSE scores.best_rank END, \
           first_passed_at = CASE WHEN scores.first_passed_at IS NULL \
             OR (excluded.first_passed_at IS NOT NULL AND excluded.first_passed_at < scores.first_passed_at) \
             THEN excluded.first_passed_at ELSE scores.first_passed_at END, \
           last_attempt_at = CASE WHEN excluded.last_attempt_at > scores.last_attempt_at \
             THEN excluded.last_attempt_at ELSE scores.last_attempt_at END",
    )
    .bind(graded.user_id.to_string())
    .bind(graded.exercise_id.to_string())
    .bind(graded.status.to_string())
    .bind(i64::from(graded.passed_tests))
    .bind(i64::from(graded.total_tests))
    .bind(rank(graded.status, graded.passed_tests))
    .bind(first_passed)
    .bind(&at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(false)
}
