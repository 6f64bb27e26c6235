//! The promotions service: promo codes and their uses (port 5005). Uses are counted
//! from `order.placed` events, taken over HTTP (`receive_event`) or, with `NATS_URL`, from
//! the JetStream stream; each event takes effect once.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{nats, server, Service};
use std::sync::Arc;

pub const NAME: &str = "promotions";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/promotions");

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

/// What promotions needs beyond what every service has.
pub struct State {
    /// Reading events from NATS, when configured.
    _consumer: Option<nats::Consumer>,
}

pub type PromotionsContext = Service<State>;

pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<PromotionsContext>> {
    if config.events_token.is_none() {
        slog::warn!(log, "EVENTS_TOKEN is not set: receive_event refuses every delivery"; "service" => NAME);
    }
    let keyring = Keyring::for_peers(config, peers)?;
    let state = State { _consumer: None };
    let mut context = Service::open(config, &SERVICE, keyring, state).await?;
    if let Some(url) = &config.nats_url {
        let db = context.db.clone();
        let validators = context.spec.validators.clone();
        let log_events = log.new(slog::o!("service" => NAME, "consumer" => "nats"));
        let handler_log = log_events.clone();
        let handler: nats::Handler = Arc::new(move |payload| {
            let (db, validators, log) = (db.clone(), validators.clone(), handler_log.clone());
            Box::pin(async move { handlers::take_raw_event(&db, &validators, &payload, &log).await })
        });
        context.state._consumer = Some(nats::consume(url.clone(), NAME, handler, log_events));
    }
    server::start(api::api::<handlers::PromotionsImpl>(), context, config, log)
}
