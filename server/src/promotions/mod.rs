//! The promotions service: promo codes and their uses (port 5005). Uses are counted
//! from `order.placed` events, taken over HTTP (`receive_event`) or, with `NATS_URL`, from
//! the JetStream stream; each event takes effect once, and only if signed with the
//! events token.

pub mod api;
mod handlers;
mod store;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::inbox::{self, Inbox};
use crate::runtime::{retention, server, Service};

pub const NAME: &str = "promotions";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::promotions::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "promo codes, counted from order events (EVENTS_TOKEN over HTTP, or NATS_URL)",
    port: 5005,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// What promotions needs beyond what every service has: its event intake.
pub struct State {
    pub inbox: Inbox,
}

/// What promotions forgets, and when: the ids of the events it took.
pub fn retention_rules(config: &Config) -> Vec<retention::Rule> {
    vec![inbox::retention_rule(config)]
}

pub type PromotionsContext = Service<State>;

pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<PromotionsContext>> {
    let keyring = Keyring::for_peers(config, peers)?;
    let context = Service::open(config, &SERVICE, keyring, ()).await?;
    let inbox = Inbox::start::<handlers::OrderPlaced, _>(config, &context, NAME, log)?;
    let context = context.with_state(State { inbox });
    server::start(api::api::<handlers::PromotionsImpl>(), context, config, log)
}
