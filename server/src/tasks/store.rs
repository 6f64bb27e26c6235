//! The tasks database: SQL (below) or, with feature `aws`, a DynamoDB table
//! (`super::dynamo`). Every query is scoped to the owner: another user's task is
//! indistinguishable from a missing one.

use crate::runtime::db::{now_text, time_column, uuid_column, Db, StoreError};
use crate::runtime::pagination::Window;
use crate::runtime::Store;
use sqlx::Row;
use taproom_client::tasks::types;
use uuid::Uuid;

/// Where tasks are kept, picked by `TASKS_DATABASE_URL`'s scheme.
pub enum TaskDb {
    Sql(Db),
    #[cfg(feature = "aws")]
    Dynamo(crate::runtime::dynamo::Table),
}

impl TaskDb {
    /// Opens the store `TASKS_DATABASE_URL` names (`dynamodb://` needs feature `aws`).
    pub async fn open(config: &crate::runtime::config::Config) -> anyhow::Result<TaskDb> {
        let url = config.database_url(super::NAME)?;
        if url.starts_with("dynamodb://") {
            #[cfg(feature = "aws")]
            return Ok(TaskDb::Dynamo(
                crate::runtime::dynamo::Table::open(&url, &super::dynamo::SCHEMA).await?,
            ));
            #[cfg(not(feature = "aws"))]
            anyhow::bail!("dynamodb:// URLs need a server built with `--features aws`");
        }
        let db = crate::runtime::server::connect(config, super::NAME, &super::MIGRATOR).await?;
        Ok(TaskDb::Sql(db))
    }

    /// The one store this is, as the runtime sees it.
    fn inner(&self) -> &dyn Store {
        match self {
            TaskDb::Sql(db) => db,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(table) => table,
        }
    }

    pub async fn create(
        &self,
        owner: Uuid,
        title: &str,
        description: Option<&str>,
    ) -> Result<types::Task, StoreError> {
        match self {
            TaskDb::Sql(db) => create(db, owner, title, description).await,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(t) => super::dynamo::create(t, owner, title, description).await,
        }
    }

    pub async fn get(&self, owner: Uuid, id: Uuid) -> Result<types::Task, StoreError> {
        match self {
            TaskDb::Sql(db) => get(db, owner, id).await,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(t) => super::dynamo::get(t, owner, id).await,
        }
    }

    pub async fn list(
        &self,
        owner: Uuid,
        done: Option<bool>,
        window: &Window,
    ) -> Result<Vec<types::Task>, StoreError> {
        match self {
            TaskDb::Sql(db) => list(db, owner, done, window).await,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(t) => super::dynamo::list(t, owner, done, window).await,
        }
    }

    pub async fn update(
        &self,
        owner: Uuid,
        id: Uuid,
        changes: Changes,
    ) -> Result<types::Task, StoreError> {
        match self {
            TaskDb::Sql(db) => update(db, owner, id, changes).await,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(t) => super::dynamo::update(t, owner, id, changes).await,
        }
    }

    pub async fn delete(&self, owner: Uuid, id: Uuid) -> Result<(), StoreError> {
        match self {
            TaskDb::Sql(db) => delete(db, owner, id).await,
            #[cfg(feature = "aws")]
            TaskDb::Dynamo(t) => super::dynamo::delete(t, owner, id).await,
        }
    }
}

impl Store for TaskDb {
    fn metrics(&self) -> &std::sync::Arc<crate::runtime::metrics::Metrics> {
        self.inner().metrics()
    }
    fn sql(&self) -> Option<&Db> {
        self.inner().sql()
    }
    fn ready(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
        self.inner().ready()
    }
}

// A macro, not a const, so that queries stay string literals (sqlx refuses dynamic SQL).
macro_rules! columns {
    () => {
        "id, title, description, done, created_at, updated_at"
    };
}

fn to_task(row: &sqlx::any::AnyRow) -> Result<types::Task, StoreError> {
    Ok(types::Task {
        id: uuid_column(row, "id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        done: row.try_get::<i64, _>("done")? != 0,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

async fn create(
    db: &Db,
    owner: Uuid,
    title: &str,
    description: Option<&str>,
) -> Result<types::Task, StoreError> {
    let now = now_text();
    let row = sqlx::query(concat!(
        "INSERT INTO tasks (id, owner_id, title, description, done, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7().to_string())
    .bind(owner.to_string())
    .bind(title)
    .bind(description)
    .bind(&now)
    .fetch_one(&db.pool)
    .await?;
    to_task(&row)
}

async fn get(db: &Db, owner: Uuid, id: Uuid) -> Result<types::Task, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM tasks WHERE id = $1 AND owner_id = $2"
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_task)
        .unwrap_or(Err(StoreError::NotFound))
}

/// The owner's tasks of one page `window` (in id order), optionally only those whose
/// `done` matches.
async fn list(
    db: &Db,
    owner: Uuid,
    done: Option<bool>,
    window: &Window,
) -> Result<Vec<types::Task>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM tasks WHERE owner_id = $1 AND id > $2 AND ($3 < 0 OR done = $3) ORDER BY id LIMIT $4"
    ))
    .bind(owner.to_string())
    .bind(window.after_text())
    .bind(done.map(i32::from).unwrap_or(-1))
    .bind(window.fetch_limit())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(to_task).collect()
}

/// Fields to change; `None` keeps the value. `description: Some(None)` clears it.
pub struct Changes {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub done: Option<bool>,
}

async fn update(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    changes: Changes,
) -> Result<types::Task, StoreError> {
    // One statement: concurrent partial updates of different fields do not undo each other.
    let row = sqlx::query(concat!(
        "UPDATE tasks SET title = COALESCE($3, title), \
           description = CASE WHEN $4 = 1 THEN $5 ELSE description END, \
           done = COALESCE($6, done), updated_at = $7 \
         WHERE id = $1 AND owner_id = $2 RETURNING ",
        columns!()
    ))
    .bind(id.to_string())
    .bind(owner.to_string())
    .bind(&changes.title)
    .bind(i32::from(changes.description.is_some()))
    .bind(changes.description.clone().flatten())
    .bind(changes.done.map(i32::from))
    .bind(now_text())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref()
        .map(to_task)
        .unwrap_or(Err(StoreError::NotFound))
}

async fn delete(db: &Db, owner: Uuid, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM tasks WHERE id = $1 AND owner_id = $2")
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
