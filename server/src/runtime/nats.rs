//! Events over NATS JetStream (when `NATS_URL` is set): the outbox relay publishes to a
//! stream, de-duplicated by event id, and receivers read it through a durable consumer,
//! acknowledging a message only after its effect has committed. A receiver that crashes
//! before acknowledging gets the message again; its own event-id record makes the second
//! delivery harmless. Every message is signed (`runtime::events`) and a consumer acts
//! only on messages whose signature verifies.

use super::config::Config;
use super::events;
use super::outbox::{Event, Sink};
use super::trace;
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

/// Re-publishing an event within this window is dropped by the server (the stream's
/// max age may not be shorter).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How to reach NATS and what the stream keeps, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `NATS_URL`, possibly with `user:password@` or `token@`.
    pub url: String,
    pub creds_file: Option<std::path::PathBuf>,
    pub max_age: Duration,
    pub max_bytes: i64,
}

impl Settings {
    /// `None` without `NATS_URL`: events go over HTTP.
    pub fn from_config(config: &Config) -> Option<Settings> {
        config.nats_url.as_ref().map(|url| Settings {
            url: url.clone(),
            creds_file: config.nats_creds_file.clone(),
            max_age: Duration::from_secs(config.nats_stream_max_age_secs),
            max_bytes: config.nats_stream_max_bytes,
        })
    }
}

/// Connection options with the credentials of `settings`, and the URL without them
/// (async-nats does not read credentials from the URL itself).
async fn options(settings: &Settings) -> Result<(async_nats::ConnectOptions, String)> {
    let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    let mut url = settings.url.clone();
    if let Ok(mut parsed) = url::Url::parse(&settings.url) {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(parsed.username());
        if !user.is_empty() {
            options = match parsed.password() {
                Some(password) => options.user_and_password(user, decode(password)),
                None => options.token(user),
            };
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            url = parsed.to_string();
        }
    }
    if let Some(path) = &settings.creds_file {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("NATS_CREDS_FILE: cannot read {}", path.display()))?;
    }
    Ok((options, url))
}

/// Connects and makes sure the stream exists with the configured limits. Reconnects on
/// its own afterwards.
pub async fn connect(settings: &Settings) -> Result<jetstream::Context> {
    let (options, url) = options(settings).await?;
    let client = options
        .connect(url.as_str())
        .await
        .with_context(|| format!("NATS_URL: cannot connect to {}", super::db::redact(&url)))?;
    let js = jetstream::new(client);
    // Created, or updated to the configured limits if it exists: without limits a stream
    // grows for as long as events are published.
    js.create_or_update_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![SUBJECTS.into()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        discard: stream::DiscardPolicy::Old,
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
    /// `EVENTS_TOKEN`: every message is signed with it.
    pub secret: String,
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    async fn send(&self, event: &Event) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        headers.insert(
            events::SIGNATURE_HEADER,
            events::sign(&self.secret, event.payload.as_bytes()).as_str(),
        );
        // The delivery's span (the relay's), so the consumer joins the trace.
        if let Some(current) = trace::current() {
            headers.insert(
                trace::TRACEPARENT,
                trace::traceparent(&current.context).as_str(),
            );
            if let Some(state) = trace::tracestate(&current.context) {
                headers.insert(trace::TRACESTATE, state.as_str());
            }
        }
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

/// Consumes the stream's `topic` through the durable consumer `durable` until the handle
/// is dropped, reconnecting with backoff whenever NATS goes away. (A durable made before
/// it had a topic filter keeps reading every subject; its handler drops what is not
/// its schema.)
/// Only messages signed with `secret` reach `handler`; others are terminated (never
/// redelivered) and logged. Each message is handled in a consumer span of the trace its
/// headers name (`trace::current`, `trace::logger`); `tracer` exports those spans.
pub fn consume(
    settings: Settings,
    secret: String,
    durable: &'static str,
    topic: &'static str,
    handler: Handler,
    log: slog::Logger,
    tracer: Arc<trace::Tracer>,
) -> Consumer {
    let task = tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match consume_once(&settings, &secret, durable, topic, &handler, &log, &tracer).await {
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
    settings: &Settings,
    secret: &str,
    durable: &str,
    topic: &str,
    handler: &Handler,
    log: &slog::Logger,
    tracer: &Arc<trace::Tracer>,
) -> Result<()> {
    let js = connect(settings).await?;
    let stream = js
        .get_stream(STREAM)
        .await
        .map_err(|e| anyhow::anyhow!("stream {STREAM}: {e}"))?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.into()),
                filter_subject: subject(topic),
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
        let signature = message
            .headers
            .as_ref()
            .and_then(|h| h.get(events::SIGNATURE_HEADER))
            .map(|v| v.as_str());
        if !events::verify(secret, &message.payload, signature) {
            // Anyone who can publish to the stream could have sent it: never act on it,
            // and never have it redelivered.
            slog::error!(log, "refusing an event without a valid signature";
                "subject" => message.subject.as_str(), "signed" => signature.is_some());
            message
                .ack_with(jetstream::AckKind::Term)
                .await
                .map_err(|e| anyhow::anyhow!("terminating: {e}"))?;
            continue;
        }
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str())
        };
        let parent = trace::remote(header(trace::TRACEPARENT), header(trace::TRACESTATE));
        let span = tracer.start(
            format!("process {}", message.subject.as_str()),
            opentelemetry::trace::SpanKind::Consumer,
            parent.as_ref(),
        );
        let taken = span
            .current()
            .scope(handler(message.payload.to_vec()))
            .await;
        span.end(taken.as_ref().err().map(|e| format!("{e:#}")));
        match taken {
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
