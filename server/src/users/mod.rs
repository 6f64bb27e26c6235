//! The users service: accounts, passwords, tokens and roles (port 5001).

pub mod api;
mod handlers;
mod store;

use crate::runtime::config::Config;
use crate::runtime::{server, Db, ServiceContext, Spec};
use dropshot::HttpServer;

pub const NAME: &str = "users";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/users");

pub struct UsersContext {
    spec: Spec,
    db: Db,
}

impl ServiceContext for UsersContext {
    fn spec(&self) -> &Spec {
        &self.spec
    }
    fn db(&self) -> &Db {
        &self.db
    }
}

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    Db::connect(
        &config.database_url(NAME)?,
        config.database_max_connections,
        &MIGRATOR,
    )
    .await
}

pub async fn start(
    config: &Config,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<UsersContext>> {
    let db = connect(config).await?;
    let context = UsersContext {
        spec: Spec::parse(NAME, api::SPEC_YAML)?,
        db,
    };
    server::start(
        api::users_api_mod::api_description::<handlers::UsersImpl>(),
        context,
        config,
        log,
    )
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    let api = api::users_api_mod::stub_api_description().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(api.openapi("users", semver::Version::new(1, 0, 0)).json()?)
}
