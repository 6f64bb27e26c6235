//! The promotions service: promo codes and their uses (port 5005). Uses are counted
//! from `order.placed` events, taken over HTTP (`receive_event`) or, with `NATS_URL`, from
//! the JetStream stream; each event takes effect once, and only if signed with the
//! events token.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{nats, retention, server, Service};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

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
    /// `EVENT_DEDUP_RETENTION_SECS`: how long taken event ids are remembered, and so the
    /// oldest event taken.
    pub dedup_retention: Duration,
    /// Reading events from NATS, when configured.
    _consumer: Option<nats::Consumer>,
    _pruner: Option<retention::Pruner>,
}

/// What promotions forgets, and when.
pub fn retention_rules(config: &Config) -> Vec<retention::Rule> {
    vec![retention::Rule {
        what: "processed_events",
        sql: "DELETE FROM processed_events WHERE id IN \
              (SELECT id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
        keep: Duration::from_secs(config.event_dedup_retention_secs),
    }]
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
    let dedup_retention = Duration::from_secs(config.event_dedup_retention_secs);
    let state = State {
        dedup_retention,
        _consumer: None,
        _pruner: None,
    };
    let mut context = Service::open(config, &SERVICE, keyring, state).await?;
    context.state._pruner = Some(context.prune(config, retention_rules(config), log));
    if let Some(settings) = nats::Settings::from_config(config) {
        let secret = config.events_token.clone().context(
            "EVENTS_TOKEN: required to verify the events read from NATS",
        )?;
        let db = context.db.clone();
        let validators = context.spec.validators.clone();
        let log_events = log.new(slog::o!("service" => NAME, "consumer" => "nats"));
        let handler_log = log_events.clone();
        let handler: nats::Handler = Arc::new(move |payload| {
            let (db, validators, log) = (db.clone(), validators.clone(), handler_log.clone());
            Box::pin(async move {
                // Runs in the message's span: its lines carry the checkout's trace id.
                let log = crate::runtime::trace::logger(&log);
                handlers::take_raw_event(&db, &validators, dedup_retention, &payload, &log).await
            })
        });
        context.state._consumer = Some(nats::consume_traced(
            settings,
            secret,
            NAME,
            handler,
            log_events,
            context.tracer.clone(),
        ));
    }
    server::start(api::api::<handlers::PromotionsImpl>(), context, config, log)
}
