//! The promotions service: promo codes and their uses (port 5005). Uses are counted
//! from `order.placed` events, taken over HTTP (`receive_event`) or, with `NATS_URL`, from
//! the JetStream stream; each event takes effect once.

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::{extract, nats, server, Db, Service};
use dropshot::HttpServer;
use std::sync::Arc;

pub const NAME: &str = "promotions";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/promotions");

/// What promotions needs beyond its database.
pub struct State {
    pub keyring: Keyring,
    /// The shared secret services send events with; without one, `receive_event` is 401.
    pub events_token: Option<String>,
    /// Reading events from NATS, when configured.
    _consumer: Option<nats::Consumer>,
}

pub type PromotionsContext = Service<State>;

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    server::connect(config, NAME, &MIGRATOR).await
}

pub async fn start(
    config: &Config,
    users_url: &str,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<PromotionsContext>> {
    let state = State {
        keyring: Keyring::remote(users_url, config.service_timeout())?,
        events_token: config.events_token.clone(),
        _consumer: None,
    };
    if state.events_token.is_none() {
        slog::warn!(log, "EVENTS_TOKEN is not set: receive_event refuses every delivery"; "service" => NAME);
    }
    let mut context = Service::open(config, NAME, api::SPEC_YAML, &MIGRATOR, state).await?;
    if let Some(url) = &config.nats_url {
        extract::register_spec(&context.spec.value)?;
        let db = context.db.clone();
        let log_events = log.new(slog::o!("service" => NAME, "consumer" => "nats"));
        let handler_log = log_events.clone();
        let handler: nats::Handler = Arc::new(move |payload| {
            let db = db.clone();
            let log = handler_log.clone();
            Box::pin(async move { handlers::take_raw_event(&db, &payload, &log).await })
        });
        context.state._consumer = Some(nats::consume(url.clone(), NAME, handler, log_events));
    }
    server::start(
        api::promotions_api_mod::api_description::<handlers::PromotionsImpl>(),
        context,
        config,
        log,
    )
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    server::served_openapi(api::promotions_api_mod::stub_api_description(), NAME)
}
