//! The exercises database: exercises, and submissions, which are also the evaluation
//! queue. A worker claims a pending submission with one conditional update (as outbox
//! relays claim events), so queued work survives restarts and a dead worker's claim
//! expires; the result and its `submission.graded` event are written in one
//! transaction, and only by the worker still holding the claim.

use crate::runtime::db::{now_text, time_column, time_text, uuid_column, Db, StoreError};
use crate::runtime::outbox;
use crate::runtime::pagination::Window;
use sqlx::Row;
use taproom_client::exercises::types;
use uuid::Uuid;

macro_rules! exercise_columns {
    () => {
        "id, title, statement, language, starter_code, test_code, created_at, updated_at"
    };
}

macro_rules! submission_columns {
    () => {
        "id, exercise_id, language, code, status, results, output, output_truncated, message, \
         created_at, finished_at"
    };
}

fn parse<T: std::str::FromStr>(row: &sqlx::any::AnyRow, name: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(name)?;
    Ok(text
        .parse()
        .map_err(|e| anyhow::anyhow!("stored {name}: {e}"))?)
}

/// An exercise with its tests (handlers hide them from non-admins).
fn to_exercise(row: &sqlx::any::AnyRow) -> Result<types::Exercise, StoreError> {
    Ok(types::Exercise {
        id: uuid_column(row, "id")?,
        title: row.try_get("title")?,
        statement: row.try_get("statement")?,
        language: parse(row, "language")?,
        starter_code: row.try_get("starter_code")?,
        test_code: row.try_get("test_code")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

fn to_submission(row: &sqlx::any::AnyRow) -> Result<types::Submission, StoreError> {
    let results: Option<String> = row.try_get("results")?;
    let tests = match results {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| anyhow::anyhow!("stored results: {e}"))?,
        None => Vec::new(),
    };
    let finished: Option<String> = row.try_get("finished_at")?;
    Ok(types::Submission {
        id: uuid_column(row, "id")?,
        exercise_id: uuid_column(row, "exercise_id")?,
        language: parse(row, "language")?,
        code: row.try_get("code")?,
        status: parse(row, "status")?,
        tests,
        output: row.try_get("output")?,
        output_truncated: row.try_get::<i64, _>("output_truncated")? != 0,
        message: row.try_get("message")?,
        created_at: time_column(row, "created_at")?,
        finished_at: finished
            .map(|t| crate::runtime::db::parse_time(&t))
            .transpose()?,
    })
}

pub struct NewExercise<'a> {
    pub title: &'a str,
    pub statement: &'a str,
    pub language: &'a str,
    pub starter_code: Option<&'a str>,
    pub test_code: &'a str,
}

pub async fn create_exercise(db: &Db, new: NewExercise<'_>) -> Result<types::Exercise, StoreError> {
    let now = now_text();
    let row = sqlx::query(concat!(
        "INSERT INTO exercises (id, title, statement, language, starter_code, test_code, \
           created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
        exercise_columns!()
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(new.title)
    .bind(new.statement)
    .bind(new.language)
    .bind(new.starter_code)
    .bind(new.test_code)
    .bind(&now)
    .fetch_one(&db.pool)
    .await?;
    to_exercise(&row)
}

pub async fn get_exercise(db: &Db, id: Uuid) -> Result<types::Exercise, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        exercise_columns!(),
        " FROM exercises WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_exercise)
        .unwrap_or(Err(StoreError::NotFound))
}

pub async fn list_exercises(db: &Db, window: &Window) -> Result<Vec<types::Exercise>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        exercise_columns!(),
        " FROM exercises WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_exercise).collect()
}

/// Fields to change; `None` keeps the value. `starter_code: Some(None)` removes it.
pub struct Changes {
    pub title: Option<String>,
    pub statement: Option<String>,
    pub language: Option<String>,
    pub starter_code: Option<Option<String>>,
    pub test_code: Option<String>,
}

pub async fn update_exercise(
    db: &Db,
    id: Uuid,
    changes: Changes,
) -> Result<types::Exercise, StoreError> {
    // One statement: concurrent partial updates of different fields do not undo each other.
    let row = sqlx::query(concat!(
        "UPDATE exercises SET title = COALESCE($2, title), statement = COALESCE($3, statement), \
           language = COALESCE($4, language), \
           starter_code = CASE WHEN $5 = 1 THEN $6 ELSE starter_code END, \
           test_code = COALESCE($7, test_code), updated_at = $8 \
         WHERE id = $1 RETURNING ",
        exercise_columns!()
    ))
    .bind(id.to_string())
    .bind(&changes.title)
    .bind(&changes.statement)
    .bind(&changes.language)
    .bind(i32::from(changes.starter_code.is_some()))
    .bind(changes.starter_code.clone().flatten())
    .bind(&changes.test_code)
    .bind(now_text())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_exercise)
        .unwrap_or(Err(StoreError::NotFound))
}

/// Deletes an exercise and its submissions (a run in progress then stores nothing).
pub async fn delete_exercise(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("DELETE FROM exercises WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    sqlx::query("DELETE FROM submissions WHERE exercise_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Queues `code` as `owner`'s submission to `exercise` (which must exist).
pub async fn create_submission(
    db: &Db,
    owner: Uuid,
    exercise: Uuid,
    code: &str,
) -> Result<types::Submission, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO submissions (id, exercise_id, owner_id, language, code, status, created_at) \
         SELECT $1, id, $2, language, $3, 'pending', $4 FROM exercises WHERE id = $5 \
         RETURNING ",
        submission_columns!()
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(owner.to_string())
    .bind(code)
    .bind(now_text())
    .bind(exercise.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_submission)
        .unwrap_or(Err(StoreError::NotFound))
}

pub async fn get_submission(
    db: &Db,
    owner: Uuid,
    exercise: Uuid,
    id: Uuid,
) -> Result<types::Submission, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        submission_columns!(),
        " FROM submissions WHERE id = $1 AND owner_id = $2 AND exercise_id = $3"
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .bind(exercise.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_submission)
        .unwrap_or(Err(StoreError::NotFound))
}

pub async fn list_submissions(
    db: &Db,
    owner: Uuid,
    exercise: Uuid,
    window: &Window,
) -> Result<Vec<types::Submission>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        submission_columns!(),
        " FROM submissions WHERE owner_id = $1 AND exercise_id = $2 AND id > $3 \
          ORDER BY id LIMIT $4"
    ))
    .bind(owner.to_string())
    .bind(exercise.to_string())
    .bind(window.after_text())
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_submission).collect()
}

/// A submission a worker has claimed, with what it needs to run it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub exercise_id: Uuid,
    pub owner_id: Uuid,
    pub language: String,
    pub code: String,
    /// `None` when the exercise was deleted meanwhile.
    pub test_code: Option<String>,
    /// Claims so far, this one included.
    pub attempts: i64,
}

/// Claims the oldest pending submission, or one whose claim has expired (its worker
/// died), for `worker` until `lease` from now.
pub async fn claim(
    db: &Db,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<Claimed>, StoreError> {
    let now = now_text();
    let until = time_text(chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default());
    let claimed = sqlx::query(
        "UPDATE submissions SET status = 'running', claimed_by = $1, claimed_until = $2, \
           attempts = attempts + 1 \
         WHERE id = (SELECT id FROM submissions WHERE status = 'pending' \
                       OR (status = 'running' AND claimed_until < $3) ORDER BY id LIMIT 1) \
           AND (status = 'pending' OR (status = 'running' AND claimed_until < $3))",
    )
    .bind(worker)
    .bind(&until)
    .bind(&now)
    .execute(&db.pool)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT s.id, s.exercise_id, s.owner_id, s.language, s.code, s.attempts, e.test_code \
         FROM submissions s LEFT JOIN exercises e ON e.id = s.exercise_id \
         WHERE s.claimed_by = $1 AND s.claimed_until = $2 AND s.status = 'running'",
    )
    .bind(worker)
    .bind(&until)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Claimed {
        id: uuid_column(&row, "id")?,
        exercise_id: uuid_column(&row, "exercise_id")?,
        owner_id: uuid_column(&row, "owner_id")?,
        language: row.try_get("language")?,
        code: row.try_get("code")?,
        test_code: row.try_get("test_code")?,
        attempts: row.try_get("attempts")?,
    }))
}

/// A graded submission, as stored.
pub struct Graded {
    pub status: types::SubmissionStatus,
    pub tests: Vec<types::TestResult>,
    pub output: String,
    pub output_truncated: bool,
    pub message: Option<String>,
}

/// Stores the result of a claimed submission and its `submission.graded` event (built
/// by `event` from the event id and the time) in one transaction, if `worker` still
/// holds the claim. Whether it did.
pub async fn finish(
    db: &Db,
    worker: &str,
    claimed: &Claimed,
    graded: &Graded,
    event: impl FnOnce(Uuid, chrono::DateTime<chrono::Utc>) -> String,
) -> Result<bool, StoreError> {
    let now = chrono::Utc::now();
    let mut tx = db.pool.begin().await?;
    let stored = sqlx::query(
        "UPDATE submissions SET status = $3, results = $4, output = $5, output_truncated = $6, \
           message = $7, finished_at = $8, claimed_by = NULL, claimed_until = NULL \
         WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
    )
    .bind(claimed.id.to_string())
    .bind(worker)
    .bind(graded.status.to_string())
    .bind(serde_json::to_string(&graded.tests).map_err(anyhow::Error::from)?)
    .bind(&graded.output)
    .bind(i32::from(graded.output_truncated))
    .bind(&graded.message)
    .bind(time_text(now))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !stored {
        return Ok(false);
    }
    let id = Uuid::now_v7();
    outbox::enqueue(&mut tx, id, super::GRADED_TOPIC, &event(id, now)).await?;
    tx.commit().await?;
    Ok(true)
}
