//! How a service's outbox reaches the service that takes its events: over NATS when
//! `NATS_URL` is set (`nats::NatsSink`), else over HTTP to the receiver's
//! `receive_event` through its generated client, with the events token as bearer and
//! each body signed with it. Orders (to promotions) and exercises (to scores) build their
//! relays here; only the typed call differs.

use super::config::Config;
use super::outbox::{Event, Relay, RelayOptions, Sink};
use super::{calls, events, nats, Db};
use anyhow::Context as _;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Sends one event body with its signature through a receiver's generated client.
pub type SendFn<T> = Arc<dyn Fn(T, String) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Delivers events over HTTP: each stored payload is parsed as the receiver's event type
/// `T`, signed as the client will serialise it, and sent.
struct HttpSink<T> {
    send: SendFn<T>,
    secret: String,
}

#[async_trait::async_trait]
impl<T> Sink for HttpSink<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static,
{
    async fn send(&self, event: &Event) -> anyhow::Result<()> {
        let body: T = serde_json::from_str(&event.payload)
            .with_context(|| format!("event {} is not the receiver's Event", event.id))?;
        // What the client sends is this serialisation of `body`, and so what is signed.
        let signature = events::sign(&self.secret, &serde_json::to_vec(&body)?);
        (self.send)(body, signature).await
    }

    fn kind(&self) -> &'static str {
        "http"
    }
}

/// A relay for the outbox at `db` of `service`, sending as the configuration says: to
/// NATS when `NATS_URL` is set, else with `http(client)`, where `client` carries the
/// events token as its bearer and the `SERVICE_TIMEOUT_MS` bound.
pub async fn relay<T>(
    config: &Config,
    db: &Db,
    service: &'static str,
    http: impl FnOnce(reqwest::Client) -> SendFn<T>,
    options: RelayOptions,
    log: &slog::Logger,
) -> anyhow::Result<Relay>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static,
{
    let token = config
        .events_token
        .as_deref()
        .with_context(|| format!("EVENTS_TOKEN: required to sign the events {service} delivers"))?;
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
            Arc::new(HttpSink {
                send: http(calls::client(config.service_timeout(), headers)?),
                secret: token.to_string(),
            })
        }
    };
    Ok(Relay::new(
        db.clone(),
        sink,
        options,
        &log.new(slog::o!("service" => service)),
    ))
}
