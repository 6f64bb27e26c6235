//! The beers service: the catalogue (port 5002). Anyone may read it; admins change it.
//! Reads carry strong ETags; changes honour `If-Match`.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::{server, Db, Service};
use dropshot::HttpServer;

pub const NAME: &str = "beers";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/beers");

/// The beers service's context: its own state is the keys tokens are checked with.
pub type BeersContext = Service<Keyring>;

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    server::connect(config, NAME, &MIGRATOR).await
}

/// Starts the service; `users_url` is where the users service publishes its keys.
pub async fn start(
    config: &Config,
    users_url: &str,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<BeersContext>> {
    let keyring = Keyring::remote(users_url, config.service_timeout())?;
    let context = Service::open(config, NAME, api::SPEC_YAML, &MIGRATOR, keyring).await?;
    server::start(
        api::beers_api_mod::api_description::<handlers::BeersImpl>(),
        context,
        config,
        log,
    )
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    server::served_openapi(api::beers_api_mod::stub_api_description(), NAME)
}
