//! The transactional outbox: a service writes an event into its `outbox` table in the
//! same transaction as the change the event describes, and a relay delivers it at least
//! once (over HTTP or NATS JetStream, see `Sink`). The receiver makes delivery take effect
//! exactly once by recording event ids with their effect.
//!
//! Several relays (one per instance) may run against one database: each claims a batch
//! with a conditional update, so two relays rarely send the same event. A claim is a
//! short lease that its relay renews while it is sending, so when a relay dies (SIGKILL,
//! power loss) the lease runs out within seconds and another relay, or the restarted
//! process, takes the events over. A crash between sending and marking an event delivered
//! means it is sent again: at least once.
//!
//! A relay is woken at once by a commit in its own process; on PostgreSQL every enqueue
//! also sends a `NOTIFY`, delivered at commit, that wakes the relays of all instances.
//! Polling is only the fallback (a lost notification, SQLite's other writers).

use super::db::{now_text, time_text, Db};
use anyhow::Result;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// An event as stored and as sent.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    /// What it is about, e.g. `order.placed` (the NATS subject's last part).
    pub topic: String,
    /// The JSON body.
    pub payload: String,
    pub attempts: i64,
    /// The trace context of the request that wrote it (W3C `traceparent`, `tracestate`).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// The PostgreSQL notification channel an enqueue signals on.
pub const CHANNEL: &str = "taproom_outbox";

/// Writes an event in the caller's transaction: it exists exactly when the change does.
/// It keeps the current span's trace context, for its delivery to join the trace.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    topic: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    let now = now_text();
    let context = super::trace::current().map(|c| c.context);
    sqlx::query(
        "INSERT INTO outbox (id, topic, payload, created_at, attempts, next_attempt_at, traceparent, tracestate) \
         VALUES ($1, $2, $3, $4, 0, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(topic)
    .bind(payload)
    .bind(&now)
    .bind(context.as_ref().map(super::trace::traceparent))
    .bind(context.as_ref().and_then(super::trace::tracestate))
    .execute(&mut **tx)
    .await?;
    if tx.backend_name() == "PostgreSQL" {
        // Delivered at commit (and never if the transaction rolls back).
        sqlx::query(sqlx::AssertSqlSafe(format!("NOTIFY {CHANNEL}")))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Where a relay sends events. `send` returns once the receiver has the event durably
/// (an HTTP 2xx, a JetStream publish acknowledgement).
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn send(&self, event: &Event) -> Result<()>;
    /// For logs: `http` or `nats`.
    fn kind(&self) -> &'static str;
}

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// How often to look for events when not woken (`OUTBOX_POLL_MS`).
    pub poll: Duration,
    /// How long a claim holds unless renewed (`OUTBOX_CLAIM_MS`): after a crash, how long
    /// the crashed relay's events wait. The relay renews its claims every third of it.
    pub claim: Duration,
    /// Events per claim.
    pub batch: u32,
    /// First retry delay; doubled per failed attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RelayOptions {
    pub fn from_config(config: &super::config::Config) -> RelayOptions {
        RelayOptions {
            poll: Duration::from_millis(config.outbox_poll_ms.max(1)),
            claim: Duration::from_millis(config.outbox_claim_ms.max(100)),
            ..Default::default()
        }
    }
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            poll: Duration::from_millis(500),
            claim: Duration::from_secs(3),
            batch: 50,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

fn after(d: Duration) -> String {
    time_text(chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or_default())
}

/// Delivers one database's outbox through one sink.
pub struct Relay {
    db: Db,
    sink: Arc<dyn Sink>,
    /// This relay's claim mark.
    name: String,
    options: RelayOptions,
    log: slog::Logger,
    wake: Arc<tokio::sync::Notify>,
    /// Where delivery spans go (see [`Relay::traced`]).
    tracer: Arc<super::trace::Tracer>,
}

impl Relay {
    pub fn new(db: Db, sink: Arc<dyn Sink>, options: RelayOptions, log: &slog::Logger) -> Relay {
        let name = Uuid::new_v4().to_string();
        Relay {
            log: log.new(slog::o!("relay" => name.clone(), "sink" => sink.kind())),
            db,
            sink,
            name,
            options,
            wake: Arc::default(),
            tracer: super::trace::Tracer::off(),
        }
    }

    /// Exports this relay's delivery spans with `tracer` (the service's).
    pub fn traced(mut self, tracer: &Arc<super::trace::Tracer>) -> Relay {
        self.tracer = tracer.clone();
        self
    }

    /// Where this relay sends (for tests that send without marking, as a relay killed
    /// between the two would).
    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }

    /// Wakes the relay now (e.g. right after a commit that enqueued an event).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Claims up to a batch of due events no live claim holds.
    pub async fn claim(&self) -> Result<Vec<Event>> {
        let now = now_text();
        let until = after(self.options.claim);
        sqlx::query(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 \
             WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $3 \
                            AND (claimed_until IS NULL OR claimed_until < $3) ORDER BY id LIMIT $4) \
               AND delivered_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3)",
        )
        .bind(&self.name)
        .bind(&until)
        .bind(&now)
        .bind(i64::from(self.options.batch))
        .execute(&self.db.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT id, topic, payload, attempts, traceparent, tracestate FROM outbox \
             WHERE claimed_by = $1 AND claimed_until = $2 AND delivered_at IS NULL ORDER BY id",
        )
        .bind(&self.name)
        .bind(&until)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: Uuid::parse_str(&r.try_get::<String, _>("id")?)?,
                    topic: r.try_get("topic")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    traceparent: r.try_get("traceparent")?,
                    tracestate: r.try_get("tracestate")?,
                })
            })
            .collect()
    }

    /// Sends claimed events one by one, marking each delivered or due again later.
    pub async fn deliver(&self, events: &[Event]) -> Result<usize> {
        let mut delivered = 0;
        for event in events {
            // A producer span in the trace of the request that wrote the event; the
            // sink sends its context along (an HTTP header, a NATS message header).
            let parent =
                super::trace::remote(event.traceparent.as_deref(), event.tracestate.as_deref());
            let mut span = self.tracer.start(
                format!("send {}", event.topic),
                opentelemetry::trace::SpanKind::Producer,
                parent.as_ref(),
            );
            span.set_attribute(|| {
                opentelemetry::KeyValue::new("messaging.message.id", event.id.to_string())
            });
            let sent = span.current().scope(self.sink.send(event)).await;
            span.end(sent.as_ref().err().map(|e| format!("{e:#}")));
            match sent {
                Ok(()) => {
                    self.db.metrics.outbox_deliveries.inc();
                    sqlx::query(
                        "UPDATE outbox SET delivered_at = $2, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = $1",
                    )
                    .bind(event.id.to_string())
                    .bind(now_text())
                    .execute(&self.db.pool)
                    .await?;
                    delivered += 1;
                }
                Err(e) => {
                    self.db.metrics.outbox_failures.inc();
                    let attempts = event.attempts + 1;
                    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32 - 1);
                    let delay = self
                        .options
                        .backoff
                        .saturating_mul(factor)
                        .min(self.options.max_backoff);
                    slog::warn!(self.log, "event delivery failed";
                        "event_id" => %event.id, "topic" => &event.topic,
                        "attempt" => attempts, "retry_in_ms" => delay.as_millis() as u64,
                        "error" => %format!("{e:#}"));
                    sqlx::query(
                        "UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, \
                           claimed_by = NULL, claimed_until = NULL \
                         WHERE id = $1 AND delivered_at IS NULL",
                    )
                    .bind(event.id.to_string())
                    .bind(attempts)
                    .bind(after(delay))
                    .bind(format!("{e:#}"))
                    .execute(&self.db.pool)
                    .await?;
                    // The receiver is likely down: leave the rest for the next round.
                    break;
                }
            }
        }
        Ok(delivered)
    }

    /// One round: claim and deliver. Returns how many were delivered.
    pub async fn run_once(&self) -> Result<usize> {
        let events = self.claim().await?;
        if events.is_empty() {
            return Ok(0);
        }
        // Sending may outlast the lease (a slow receiver, a long batch): keep it alive.
        let delivered = tokio::select! {
            delivered = self.deliver(&events) => delivered?,
            never = self.renew_claims() => match never {},
        };
        if delivered < events.len() {
            // Give back what this round did not try, so others need not wait for the claim.
            sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL \
                 WHERE claimed_by = $1 AND delivered_at IS NULL",
            )
            .bind(&self.name)
            .execute(&self.db.pool)
            .await?;
        }
        Ok(delivered)
    }

    /// Extends this relay's claims every third of the lease, until dropped.
    async fn renew_claims(&self) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(self.options.claim / 3).await;
            let renewed = sqlx::query(
                "UPDATE outbox SET claimed_until = $2 WHERE claimed_by = $1 AND delivered_at IS NULL",
            )
            .bind(&self.name)
            .bind(after(self.options.claim))
            .execute(&self.db.pool)
            .await;
            if let Err(e) = renewed {
                // The next attempt may succeed; meanwhile another relay may take over
                // (and the receiver's duplicate check keeps that harmless).
                slog::warn!(self.log, "renewing outbox claims failed"; "error" => %e);
            }
        }
    }

    /// Wakes the relay on every PostgreSQL notification of an enqueue, reconnecting
    /// when the listening connection fails. Returns at once on SQLite.
    async fn listen(db: Db, wake: Arc<tokio::sync::Notify>, log: slog::Logger) {
        let mut delay = Duration::from_millis(100);
        loop {
            match db.listen(CHANNEL).await {
                Ok(None) => return,
                Ok(Some(mut listener)) => {
                    delay = Duration::from_millis(100);
                    // Notifications sent while not listening are lost: look once now.
                    wake.notify_one();
                    loop {
                        match listener.recv().await {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                slog::warn!(log, "outbox notifications lost"; "error" => %e);
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    slog::warn!(log, "cannot listen for outbox notifications"; "error" => %format!("{e:#}"))
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Runs until the handle is dropped: a round whenever woken or every `poll`.
    pub fn spawn(self) -> RelayHandle {
        let wake = self.wake.clone();
        let listener = tokio::spawn(Relay::listen(
            self.db.clone(),
            wake.clone(),
            self.log.clone(),
        ));
        let task = tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    // A full batch: there may be more right away.
                    Ok(n) if n > 0 && n == self.options.batch as usize => continue,
                    Ok(_) => {}
                    Err(e) => {
                        slog::warn!(self.log, "outbox relay round failed"; "error" => %format!("{e:#}"))
                    }
                }
                let _ = tokio::time::timeout(self.options.poll, self.wake.notified()).await;
            }
        });
        RelayHandle {
            task,
            listener,
            wake,
        }
    }
}

/// A running relay; dropping it stops the relay.
pub struct RelayHandle {
    task: tokio::task::JoinHandle<()>,
    listener: tokio::task::JoinHandle<()>,
    wake: Arc<tokio::sync::Notify>,
}

impl RelayHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
        self.listener.abort();
    }
}

/// The rule that forgets delivered events once older than `keep` (undelivered ones are
/// never pruned, however old).
pub fn retention_rule(keep: Duration) -> super::retention::Rule {
    super::retention::Rule {
        what: "outbox",
        sql:
            "DELETE FROM outbox WHERE id IN \
              (SELECT id FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1 LIMIT $2)",
        keep,
    }
}

/// What is waiting to be delivered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backlog {
    pub depth: i64,
    /// Age of the oldest undelivered event, in seconds (0 when there is none).
    pub oldest_age_secs: f64,
}

pub async fn backlog(db: &Db) -> Result<Backlog> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(&db.pool)
    .await?;
    let depth: i64 = row.try_get("depth")?;
    let oldest: Option<String> = row.try_get("oldest")?;
    let oldest_age_secs = match oldest {
        Some(t) => {
            let at = super::db::parse_time(&t)?;
            (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
        }
        None => 0.0,
    };
    Ok(Backlog {
        depth,
        oldest_age_secs,
    })
}
