//! The tasks service: each user's to-do tasks (port 5004). It verifies bearer tokens
//! with the users service's published keys and stores tasks in its own database.

pub mod api;
#[cfg(feature = "aws")]
mod dynamo;
mod handlers;
mod store;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{server, Service};

pub const NAME: &str = "tasks";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::tasks::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "each user's to-do tasks",
    port: 5004,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// No state beyond what every service has; tasks are in SQL or DynamoDB (`TaskDb`).
pub type TasksContext = Service<(), store::TaskDb>;

/// Starts the service; `peers["users"]` is where the users service publishes its keys.
pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<TasksContext>> {
    let keyring = Keyring::for_peers(config, peers)?;
    let db = store::TaskDb::open(config).await?;
    let context = Service::open_on(config, &SERVICE, keyring, (), db)?;
    server::start(api::api::<handlers::TasksImpl>(), context, config, log)
}
