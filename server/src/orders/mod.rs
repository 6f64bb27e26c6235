//! The orders service: each user's orders (port 5003). Items are looked up in the
//! catalogue through the generated beers client, on the caller's behalf (their token and
//! request id go along), and snapshotted: an order keeps the name and price a beer had.
//! Promo codes are checked with promotions at checkout, and every checkout writes an
//! `order.placed` event to the outbox, which a relay delivers (HTTP or NATS).

pub mod api;
mod handlers;
mod store;

use crate::runtime::auth::Keyring;
use crate::runtime::config::Config;
use crate::runtime::outbox::{self, Relay, RelayHandle, RelayOptions, Sink};
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{calls, events, nats, retention, server, Db, Service};
use anyhow::Context as _;
use dropshot::HttpServer;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "orders";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/orders");

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

/// Delivers `order.placed` events to promotions' `receive_event` with the events token,
/// each signed with it.
struct HttpSink {
    promotions: taproom_client::promotions::Client,
    secret: String,
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    async fn send(&self, event: &outbox::Event) -> anyhow::Result<()> {
        let body: taproom_client::promotions::types::Event =
            serde_json::from_str(&event.payload)
                .with_context(|| format!("event {} is not an Event", event.id))?;
        // What the client sends is this serialisation of `body`, and so what is signed.
        let signature = events::sign(&self.secret, &serde_json::to_vec(&body)?);
        self.promotions
            .receive_event()
            .taproom_signature(signature)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("receive_event: {e}"))?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "http"
    }
}

/// A relay for the orders outbox at `db`, sending as the configuration says: to NATS
/// when `NATS_URL` is set, else to promotions over HTTP with `EVENTS_TOKEN`.
pub async fn relay(
    config: &Config,
    db: &Db,
    promotions_url: &str,
    options: RelayOptions,
    log: &slog::Logger,
) -> anyhow::Result<Relay> {
    let token = config
        .events_token
        .as_deref()
        .context("EVENTS_TOKEN: required to sign the events orders delivers")?;
    let sink: Arc<dyn Sink> = match nats::Settings::from_config(config) {
        Some(settings) => Arc::new(nats::NatsSink {
            js: nats::connect(&settings).await?,
            timeout: config.service_timeout(),
            secret: token.to_string(),
        }),
        None => {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("EVENTS_TOKEN: not valid header text")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
            let http = calls::client(config.service_timeout(), headers)?;
            Arc::new(HttpSink {
                promotions: taproom_client::promotions::Client::new_with_client(
                    promotions_url,
                    http,
                    Default::default(),
                ),
                secret: token.to_string(),
            })
        }
    };
    Ok(Relay::new(
        db.clone(),
        sink,
        options,
        &log.new(slog::o!("service" => NAME)),
    ))
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
            RelayOptions::default(),
            log,
        )
        .await?
        .traced(&context.tracer);
        context.state.relay = Some(relay.spawn());
    }
    server::start(api::api::<handlers::OrdersImpl>(), context, config, log)
}
