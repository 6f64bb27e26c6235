//! The tasks service: each user's to-do tasks (port 5004). It verifies bearer tokens
//! with the users service's published keys and stores tasks in its own database.

pub mod api;
mod handlers;
mod store;

pub const NAME: &str = "tasks";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/tasks");

crate::runtime::keyring_service!(TasksContext, handlers::TasksImpl, tasks_api_mod);
