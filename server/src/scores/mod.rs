//! The scores service (port 5007): each user's scores. It verifies bearer
//! tokens with the users service's published keys and keeps its data in its own database.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{server, Service};

pub const NAME: &str = "scores";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/scores");

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "each user's scores",
    port: 5007,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// The service's own state beyond what every service has: none yet.
pub type ScoresContext = Service<()>;

/// Starts the service; `peers["users"]` is where the users service publishes its keys.
pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<ScoresContext>> {
    let keyring = Keyring::for_peers(config, peers)?;
    let context = Service::open(config, &SERVICE, keyring, ()).await?;
    server::start(api::api::<handlers::ScoresImpl>(), context, config, log)
}
