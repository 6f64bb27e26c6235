//! The scores service (port 5007): each user's results per exercise (attempts, best
//! result, first pass), counted from the exercises service's `submission.graded`
//! events, taken over HTTP (`receive_event`) or, with `NATS_URL`, from the JetStream
//! stream, with the same intake as promotions (`runtime::inbox`): each event counts
//! once, and only if signed with the events token.

pub mod api;
mod handlers;
mod store;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::inbox::{self, Inbox};
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{retention, server, Service};

pub const NAME: &str = "scores";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::scores::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "each user's results per exercise, counted from submission events",
    port: 5007,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// What scores needs beyond what every service has: its event intake.
pub struct State {
    pub inbox: Inbox,
}

/// What scores forgets, and when: the ids of the events it took.
pub fn retention_rules(config: &Config) -> Vec<retention::Rule> {
    vec![inbox::retention_rule(config)]
}

pub type ScoresContext = Service<State>;

/// Starts the service; `peers["users"]` is where the users service publishes its keys.
pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<ScoresContext>> {
    let keyring = Keyring::for_peers(config, peers)?;
    let context = Service::open(config, &SERVICE, keyring, ()).await?;
    let inbox = Inbox::start::<handlers::SubmissionGraded, _>(config, &context, NAME, log)?;
    let context = context.with_state(State { inbox });
    server::start(api::api::<handlers::ScoresImpl>(), context, config, log)
}
