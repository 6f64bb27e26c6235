//! The receiving side of events, shared by every service that takes them (promotions
//! takes `order.placed`, scores takes `submission.graded`): over HTTP its `receive_event`
//! operation, with `NATS_URL` a durable JetStream consumer named after the service. Either
//! way an event is validated against the `receive_event` body schema, refused when older
//! than the duplicate check remembers (`EVENT_DEDUP_RETENTION_SECS`), and taken by the
//! service's `Receiver::take`, which records the event id in `processed_events` in the
//! same transaction as the effect, so that each event counts once. `Inbox` keeps the
//! consumer and the pruning of old event ids running.

use super::config::Config;
use super::db::{Db, StoreError};
use super::extract::Validators;
use super::{nats, retention, Problem, Service};
use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How a service takes one kind of event.
pub trait Receiver: Send + Sync + 'static {
    /// The `receive_event` body, as generated from the service's YAML.
    type Event: serde::de::DeserializeOwned + Send + Sync + 'static;
    /// The topic it takes (`order.placed`): the NATS subject its consumer reads.
    const TOPIC: &'static str;
    fn id(event: &Self::Event) -> uuid::Uuid;
    fn occurred_at(event: &Self::Event) -> chrono::DateTime<chrono::Utc>;
    /// Applies the event unless its id was taken before (then `Ok(true)`: a duplicate),
    /// in one transaction with the record of its id.
    fn take(db: &Db, event: &Self::Event) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What a receiving service keeps running: the NATS consumer (when configured) and the
/// pruning of taken event ids.
pub struct Inbox {
    /// `EVENT_DEDUP_RETENTION_SECS`: how long taken event ids are remembered, and so the
    /// oldest event taken.
    pub dedup_retention: Duration,
    _consumer: Option<nats::Consumer>,
    _pruner: retention::Pruner,
}

/// Forgets taken event ids after `EVENT_DEDUP_RETENTION_SECS`.
pub fn retention_rule(config: &Config) -> retention::Rule {
    retention::Rule {
        what: "processed_events",
        sql: "DELETE FROM processed_events WHERE id IN \
              (SELECT id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
        keep: Duration::from_secs(config.event_dedup_retention_secs),
    }
}

/// Records, in the caller's transaction, that the event `id` was taken: `false` when it
/// had been (a duplicate, whose effect must not be applied again).
pub async fn first_time(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: uuid::Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (id, processed_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(super::db::now_text())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether an event that occurred at `occurred_at` is older than the duplicate check
/// remembers (`max_age`): its id may have been pruned, so taking it could count it twice
/// (a replay of a captured event, or one that waited longer than the settings allow).
pub fn too_old(occurred_at: chrono::DateTime<chrono::Utc>, max_age: Duration) -> bool {
    chrono::Duration::from_std(max_age)
        .ok()
        .and_then(|max| chrono::Utc::now().checked_sub_signed(max))
        .is_some_and(|oldest| occurred_at < oldest)
}

impl Inbox {
    /// Starts pruning `context`'s taken event ids, and with `NATS_URL` consuming
    /// `R::TOPIC` through the durable consumer `durable`.
    pub fn start<R: Receiver, S>(
        config: &Config,
        context: &Service<S>,
        durable: &'static str,
        log: &slog::Logger,
    ) -> anyhow::Result<Inbox> {
        if config.events_token.is_none() {
            slog::warn!(log, "EVENTS_TOKEN is not set: receive_event refuses every delivery"; "service" => durable);
        }
        let dedup_retention = Duration::from_secs(config.event_dedup_retention_secs);
        let consumer = match nats::Settings::from_config(config) {
            Some(settings) => {
                let secret = config
                    .events_token
                    .clone()
                    .context("EVENTS_TOKEN: required to verify the events read from NATS")?;
                let db = context.db.clone();
                let validators = context.spec.validators.clone();
                let log_events = log.new(slog::o!("service" => durable, "consumer" => "nats"));
                let handler_log = log_events.clone();
                let handler: nats::Handler = Arc::new(move |payload| {
                    let (db, validators, log) =
                        (db.clone(), validators.clone(), handler_log.clone());
                    Box::pin(async move {
                        // Runs in the message's span: its lines carry the sender's trace id.
                        let log = super::trace::logger(&log);
                        take_raw::<R>(&db, &validators, dedup_retention, &payload, &log).await
                    })
                });
                Some(nats::consume(
                    settings,
                    secret,
                    durable,
                    R::TOPIC,
                    handler,
                    log_events,
                    context.tracer.clone(),
                ))
            }
            None => None,
        };
        Ok(Inbox {
            dedup_retention,
            _consumer: consumer,
            _pruner: context.prune(config, vec![retention_rule(config)], log),
        })
    }

    /// Takes an event that came over HTTP (`receive_event`; its signature already
    /// verified on the raw body by the extractor): whether it was a duplicate, or 422
    /// when it is too old to be taken safely.
    pub async fn receive<R: Receiver>(
        &self,
        db: &Db,
        log: &slog::Logger,
        request_id: &str,
        event: &R::Event,
    ) -> Result<bool, Problem> {
        if too_old(R::occurred_at(event), self.dedup_retention) {
            return Err(Problem::new(
                422,
                "The event is older than this service remembers events for \
                 (EVENT_DEDUP_RETENTION_SECS); it is not taken.",
            )
            .request(request_id));
        }
        take::<R>(db, event)
            .await
            .map_err(|e| e.problem(log, request_id, "event"))
    }
}

/// `R::take`, counted (events taken, duplicates) in the service's metrics.
async fn take<R: Receiver>(db: &Db, event: &R::Event) -> Result<bool, StoreError> {
    let duplicate = R::take(db, event).await?;
    if duplicate {
        db.metrics.events_duplicates.inc();
    } else {
        db.metrics.events_consumed.inc();
    }
    Ok(duplicate)
}

/// Takes an event from NATS (its signature already verified by the consumer), validated
/// like `receive_event`'s body. An event that can never be taken (not JSON, not an
/// event of this schema, too old) is logged and dropped rather than redelivered forever;
/// a store failure is an error, so the message is delivered again.
pub async fn take_raw<R: Receiver>(
    db: &Db,
    validators: &Validators,
    max_age: Duration,
    payload: &[u8],
    log: &slog::Logger,
) -> anyhow::Result<()> {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            slog::error!(log, "dropping an event that is not JSON"; "error" => %e);
            return Ok(());
        }
    };
    let errors = validators.validate_body("receive_event", &value);
    let event: R::Event = match (errors.is_empty(), serde_json::from_value(value)) {
        (true, Ok(event)) => event,
        (_, result) => {
            slog::error!(log, "dropping an event that does not match the Event schema";
                "errors" => ?errors, "decode" => ?result.err().map(|e| e.to_string()));
            return Ok(());
        }
    };
    if too_old(R::occurred_at(&event), max_age) {
        slog::error!(log, "dropping an event older than the duplicate check (EVENT_DEDUP_RETENTION_SECS)";
            "event_id" => %R::id(&event), "occurred_at" => %R::occurred_at(&event));
        return Ok(());
    }
    let duplicate = take::<R>(db, &event)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    slog::info!(log, "event taken"; "event_id" => %R::id(&event), "duplicate" => duplicate);
    Ok(())
}
