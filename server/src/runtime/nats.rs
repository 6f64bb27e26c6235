//! Events over NATS JetStream (when `NATS_URL` is set): the outbox relay publishes to a
//! stream, de-duplicated by event id, and receivers read it through a durable consumer,
//! acknowledging a message only after its effect has committed. A receiver that crashes
//! before acknowledging gets the message again; its own event-id record makes the second
//! delivery harmless.

use super::outbox::{Event, Sink};
use anyhow::{Context as _, Result};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The stream every service's events go to; subjects are `taproom.events.<topic>`.
pub const STREAM: &str = "TAPROOM_EVENTS";
const SUBJECTS: &str = "taproom.events.>";

pub fn subject(topic: &str) -> String {
    format!("taproom.events.{topic}")
}

/// Connects and makes sure the stream exists. Reconnects on its own afterwards.
pub async fn connect(url: &str) -> Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .with_context(|| format!("NATS_URL: cannot connect to {}", super::db::redact(url)))?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![SUBJECTS.into()],
        storage: stream::StorageType::File,
        // Re-publishing an event within this window is dropped by the server.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating stream {STREAM}: {e}"))?;
    Ok(js)
}

/// Publishes events; returns once JetStream has stored them.
pub struct NatsSink {
    pub js: jetstream::Context,
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    async fn send(&self, event: &Event) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        let publish = async {
            self.js
                .publish_with_headers(subject(&event.topic), headers, event.payload.clone().into())
                .await
                .map_err(|e| anyhow::anyhow!("publish: {e}"))?
                .await
                .map_err(|e| anyhow::anyhow!("publish acknowledgement: {e}"))
        };
        tokio::time::timeout(self.timeout, publish)
            .await
            .map_err(|_| anyhow::anyhow!("no acknowledgement from NATS in {:?}", self.timeout))??;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "nats"
    }
}

/// Takes one message's payload; `Ok` once its effect is committed.
pub type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Consumes the stream through the durable consumer `durable` until the handle is
/// dropped, reconnecting with backoff whenever NATS goes away.
pub fn consume(
    url: String,
    durable: &'static str,
    handler: Handler,
    log: slog::Logger,
) -> Consumer {
    let task = tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match consume_once(&url, durable, &handler, &log).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(e) => {
                    slog::warn!(log, "event consumer stopped; reconnecting";
                        "error" => %format!("{e:#}"), "retry_in_ms" => delay.as_millis() as u64);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    Consumer { task }
}

async fn consume_once(
    url: &str,
    durable: &str,
    handler: &Handler,
    log: &slog::Logger,
) -> Result<()> {
    let js = connect(url).await?;
    let stream = js
        .get_stream(STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("stream {STREAM}: {e}"))?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {durable}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("consumer {durable}: {e}"))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?;
        match handler(message.payload.to_vec()).await {
            Ok(()) => message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?,
            Err(e) => {
                slog::warn!(log, "event not taken; it will be redelivered"; "error" => %format!("{e:#}"));
                message
                    .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                    .map_err(|e| anyhow::anyhow!("negative acknowledgement: {e}"))?;
            }
        }
    }
    anyhow::bail!("message stream ended")
}

/// A running consumer; dropping it stops consuming.
pub struct Consumer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
