//! The beers service: the catalogue (port 5002). Anyone may read it; admins change it.
//! Reads carry strong ETags; changes honour `If-Match`.

pub mod api;
mod handlers;
mod store;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{server, Service};

pub const NAME: &str = "beers";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::beers::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "the catalogue: public browsing, admin-only changes",
    port: 5002,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

pub type BeersContext = Service<()>;

/// Starts the service; admins are recognised by tokens checked with users' keys.
pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<BeersContext>> {
    let context = Service::open(config, &SERVICE, Keyring::for_peers(config, peers)?, ()).await?;
    server::start(api::api::<handlers::BeersImpl>(), context, config, log)
}
