//! The tasks service: each user's to-do tasks (port 5004). It verifies bearer tokens
//! with the users service's published keys and stores tasks in its own database.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::{server, Db, Service};
use dropshot::HttpServer;

pub const NAME: &str = "tasks";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/tasks");

/// The tasks service's context: its own state is the keys tokens are checked with.
pub type TasksContext = Service<Keyring>;

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    server::connect(config, NAME, &MIGRATOR).await
}

/// Starts the service; `users_url` is where the users service publishes its keys.
pub async fn start(
    config: &Config,
    users_url: &str,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<TasksContext>> {
    let keyring = Keyring::remote(users_url, config.service_timeout())?;
    let context = Service::open(config, NAME, api::SPEC_YAML, &MIGRATOR, keyring).await?;
    server::start(
        api::tasks_api_mod::api_description::<handlers::TasksImpl>(),
        context,
        config,
        log,
    )
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    server::served_openapi(api::tasks_api_mod::stub_api_description(), NAME)
}
