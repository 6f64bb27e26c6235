//! The orders service: each user's orders (port 5003). Items are looked up in the
//! catalogue through the generated beers client, on the caller's behalf (their token and
//! request id go along), and snapshotted: an order keeps the name and price a beer had.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::{server, Db, Service};
use dropshot::HttpServer;

pub const NAME: &str = "orders";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/orders");

/// What orders needs beyond its database.
pub struct Peers {
    /// The keys tokens are checked with.
    pub keyring: Keyring,
    /// The catalogue, with calls bounded by `SERVICE_TIMEOUT_MS`.
    pub beers: taproom_client::beers::Client,
}

pub type OrdersContext = Service<Peers>;

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    server::connect(config, NAME, &MIGRATOR).await
}

/// Starts the service against the users service at `users_url` (for token keys) and
/// the beers service at `beers_url`.
pub async fn start(
    config: &Config,
    users_url: &str,
    beers_url: &str,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<OrdersContext>> {
    let timeout = config.service_timeout();
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?;
    let peers = Peers {
        keyring: Keyring::remote(users_url, timeout)?,
        beers: taproom_client::beers::Client::new_with_client(beers_url, http),
    };
    let context = Service::open(config, NAME, api::SPEC_YAML, &MIGRATOR, peers).await?;
    server::start(
        api::orders_api_mod::api_description::<handlers::OrdersImpl>(),
        context,
        config,
        log,
    )
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    server::served_openapi(api::orders_api_mod::stub_api_description(), NAME)
}
