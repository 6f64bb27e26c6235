//! The orders service: each user's orders (port 5003). Items are looked up in the
//! catalogue through the generated beers client, on the caller's behalf (their token and
//! request id go along), and snapshotted: an order keeps the name and price a beer had.
//! Promo codes are checked with promotions at checkout, and every checkout writes an
//! `order.placed` event to the outbox, which a relay delivers (HTTP or NATS).

pub mod api;
mod handlers;
mod store;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::outbox::{self, Relay, RelayHandle, RelayOptions};
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{calls, delivery, retention, server, Db, Service};
use dropshot::HttpServer;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "orders";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::orders::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "each user's orders: beers looked up in the catalogue, idempotent checkout",
    port: 5003,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users", "beers", "promotions"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// What orders needs beyond what every service has.
pub struct Peers {
    /// The catalogue, with calls bounded by `SERVICE_TIMEOUT_MS`.
    pub beers: taproom_client::beers::Client,
    /// Promo code checks, bounded the same way.
    pub promotions: taproom_client::promotions::Client,
    /// This instance's outbox relay, if it runs one.
    relay: Option<RelayHandle>,
    /// `IDEMPOTENCY_RETENTION_SECS`: how long a checkout's answer is replayed.
    pub idempotency_retention: Duration,
    _pruner: Option<retention::Pruner>,
}

/// What orders forgets, and when: delivered events, and expired idempotency keys.
pub fn retention_rules(config: &Config) -> Vec<retention::Rule> {
    vec![
        outbox::retention_rule(Duration::from_secs(config.outbox_retention_secs)),
        retention::Rule {
            what: "idempotency_keys",
            sql: "DELETE FROM idempotency_keys WHERE (user_id, idem_key) IN \
                  (SELECT user_id, idem_key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
            keep: Duration::from_secs(config.idempotency_retention_secs),
        },
    ]
}

impl Peers {
    /// Asks the relay to deliver now (after a commit that wrote an event).
    pub fn wake_relay(&self) {
        if let Some(relay) = &self.relay {
            relay.wake();
        }
    }
}

pub type OrdersContext = Service<Peers>;

/// A relay for the orders outbox at `db`, sending as the configuration says: to NATS
/// when `NATS_URL` is set, else to promotions' `receive_event` over HTTP.
pub async fn relay(
    config: &Config,
    db: &Db,
    promotions_url: &str,
    options: RelayOptions,
    log: &slog::Logger,
) -> anyhow::Result<Relay> {
    let url = promotions_url.to_string();
    let http = move |client| -> delivery::SendFn<taproom_client::promotions::types::Event> {
        let promotions =
            taproom_client::promotions::Client::new_with_client(&url, client, Default::default());
        Arc::new(move |body, signature| {
            let promotions = promotions.clone();
            Box::pin(async move {
                promotions
                    .receive_event()
                    .taproom_signature(signature)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("receive_event: {e}"))?;
                Ok(())
            })
        })
    };
    delivery::relay(config, db, NAME, http, options, log).await
}

pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<OrdersContext>> {
    let http = calls::client(config.service_timeout(), Default::default())?;
    let state = Peers {
        beers: taproom_client::beers::Client::new_with_client(&peers["beers"], http.clone(), Default::default()),
        promotions: taproom_client::promotions::Client::new_with_client(
            &peers["promotions"],
            http,
            Default::default(),
        ),
        relay: None,
        idempotency_retention: Duration::from_secs(config.idempotency_retention_secs),
        _pruner: None,
    };
    let keyring = Keyring::for_peers(config, peers)?;
    let mut context = Service::open(config, &SERVICE, keyring, state).await?;
    context.db.outbox = true;
    context.state._pruner = Some(context.prune(config, retention_rules(config), log));
    if config.outbox_relay {
        let relay = relay(
            config,
            &context.db,
            &peers["promotions"],
            RelayOptions::from_config(config),
            log,
        )
        .await?
        .traced(&context.tracer);
        context.state.relay = Some(relay.spawn());
    }
    server::start(api::api::<handlers::OrdersImpl>(), context, config, log)
}
