//! The exercises service (port 5006): coding exercises written by admins, and users'
//! submissions, evaluated against the exercises' hidden tests in a sandbox
//! (`sandbox`, bubblewrap) by a bounded worker pool (`worker`) in the languages of
//! `languages`. Every graded submission writes a `submission.graded` event to the
//! outbox in the same transaction as the grade; a relay delivers it to scores (HTTP or
//! NATS, `runtime::delivery`).

pub mod api;
mod handlers;
pub mod languages;
pub mod sandbox;
mod store;
pub mod worker;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::auth::Keyring;
use crate::runtime::config::{Config, SandboxSettings};
use crate::runtime::outbox::{self, RelayHandle, RelayOptions};
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{delivery, retention, server, Db, Service};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "exercises";

/// The topic of the events exercises writes.
pub const GRADED_TOPIC: &str = "submission.graded";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::exercises::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "coding exercises, with submissions evaluated in a bubblewrap sandbox",
    port: 5006,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &["users", "scores"],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// What exercises needs beyond what every service has.
pub struct State {
    pool: worker::Pool,
    _relay: Option<RelayHandle>,
    _pruner: retention::Pruner,
}

impl State {
    /// Wakes a worker: a submission was queued.
    pub fn submitted(&self) {
        self.pool.wake();
    }
}

pub type ExercisesContext = Service<State>;

/// The sandbox the settings describe. Runs drop to their own host uids when the
/// service runs as root.
pub fn sandbox(settings: &SandboxSettings) -> sandbox::Sandbox {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    sandbox::Sandbox {
        bwrap: settings.sandbox_bwrap.clone(),
        limits: sandbox::Limits {
            cpu: Duration::from_secs(settings.sandbox_cpu_secs),
            wall: Duration::from_millis(settings.sandbox_wall_ms),
            memory_bytes: settings.sandbox_memory_mb << 20,
            processes: settings.sandbox_processes,
            output_bytes: settings.sandbox_output_bytes,
            tmpfs_bytes: settings.sandbox_tmpfs_mb << 20,
            open_files: 64,
        },
        uid_base: root.then_some(settings.sandbox_uid_base),
    }
}

/// Proves the sandbox works for every language (a trivial program, sandboxed): the
/// service refuses to start otherwise rather than run code unsandboxed.
pub async fn check_sandbox(sandbox: Arc<sandbox::Sandbox>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        for language in languages::LANGUAGES {
            sandbox
                .check(language.probe, "ok")
                .with_context(|| format!("exercises: the {} sandbox", language.name))?;
        }
        Ok(())
    })
    .await?
}

/// The number of workers: `SANDBOX_WORKERS`, or one per core.
pub fn workers(settings: &SandboxSettings) -> usize {
    match settings.sandbox_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A relay for the exercises outbox at `db`: to NATS when `NATS_URL` is set, else to
/// scores' `receive_event` over HTTP.
pub async fn relay(
    config: &Config,
    db: &Db,
    scores_url: &str,
    log: &slog::Logger,
) -> anyhow::Result<outbox::Relay> {
    let url = scores_url.to_string();
    let http = move |client| -> delivery::SendFn<taproom_client::scores::types::Event> {
        let scores = taproom_client::scores::Client::new_with_client(&url, client, Default::default());
        Arc::new(move |body, signature| {
            let scores = scores.clone();
            Box::pin(async move {
                scores
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
    delivery::relay(config, db, NAME, http, RelayOptions::from_config(config), log).await
}

/// Starts the service: checks the sandbox, then the worker pool and the outbox relay.
pub async fn start(
    config: &Config,
    peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<dropshot::HttpServer<ExercisesContext>> {
    anyhow::ensure!(
        !sandbox::exposes(&config.data_dir),
        "exercises: DATA_DIR ({}) is under a system directory the code sandbox shows to \
         submissions (/usr, /bin, /lib…); put it elsewhere",
        config.data_dir.display()
    );
    let sandbox = Arc::new(sandbox(&config.sandbox));
    // Never run submissions unsandboxed: without a working sandbox there is no service.
    check_sandbox(sandbox.clone())
        .await
        .map_err(|e| crate::runtime::registry::Unavailable(format!("{e:#}")))?;
    let keyring = Keyring::for_peers(config, peers)?;
    let mut context = Service::open(config, &SERVICE, keyring, ()).await?;
    context.db.outbox = true;
    let (relay, waker) = if config.outbox_relay {
        let relay = relay(config, &context.db, &peers["scores"], log)
            .await?
            .traced(&context.tracer);
        let waker = relay.waker();
        (Some(relay.spawn()), Some(waker))
    } else {
        (None, None)
    };
    // The server and the pruner add the service's name to their own loggers.
    let pool = worker::spawn(
        context.db.clone(),
        sandbox,
        workers(&config.sandbox),
        waker,
        &log.new(slog::o!("service" => NAME)),
    );
    let rules = vec![outbox::retention_rule(Duration::from_secs(
        config.outbox_retention_secs,
    ))];
    let pruner = context.prune(config, rules, log);
    let state = State {
        pool,
        _relay: relay,
        _pruner: pruner,
    };
    server::start(
        api::api::<handlers::ExercisesImpl>(),
        context.with_state(state),
        config,
        log,
    )
}
