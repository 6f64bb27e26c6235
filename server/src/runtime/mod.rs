//! What every service shares: errors, validation, database, infrastructure endpoints,
//! configuration and the server start-up.

/// An unpublished `GET` endpoint (not in the spec; e.g. the docs UI), as an
/// `ApiEndpoint` for `server::start` to register.
macro_rules! unpublished_get {
    ($name:literal, $handler:expr, $path:literal) => {
        dropshot::ApiEndpoint::new(
            $name.into(),
            $handler,
            http::Method::GET,
            "application/json",
            $path,
            dropshot::ApiEndpointVersions::All,
        )
        .visible(false)
    };
}

/// What a generated `api.rs` names its arguments with, typed with its service's context
/// (`$context`): every extractor reads the spec (validators) and the keys (security)
/// from that context, never from process-wide state.
macro_rules! api_aliases {
    ($context:ty) => {
        /// The service's context.
        pub type Context = $context;
        /// A JSON body, validated against this service's YAML before deserialising.
        pub type ValidatedBody<T> = $crate::runtime::extract::ValidatedBody<T, Context>;
        /// A JSON body the operation does not require, validated when present.
        pub type OptionalBody<T> = $crate::runtime::extract::OptionalBody<T, Context>;
        /// Path parameters, validated against this service's YAML.
        pub type ValidatedPath<T> = $crate::runtime::extract::ValidatedPath<T, Context>;
        /// Query parameters, validated against this service's YAML.
        pub type ValidatedQuery<T> = $crate::runtime::extract::ValidatedQuery<T, Context>;
        /// Header parameters, validated against this service's YAML.
        pub type ValidatedHeaders<T> = $crate::runtime::extract::ValidatedHeaders<T, Context>;
        /// `security: [{bearerAuth: []}]`: a caller with a valid token.
        pub type Authenticated = $crate::runtime::security::Authenticated<Context>;
        /// `security: [{bearerAuth: []}]` with `x-roles: [admin]`: an admin caller.
        pub type Admin =
            $crate::runtime::security::WithRole<Context, $crate::runtime::security::role::Admin>;
        /// `security: [{eventsAuth: []}]`: another service with the events token.
        pub type EventSender = $crate::runtime::security::EventSender<Context>;
        /// `x-rate-limit: credentials`: the client's address is within its limit.
        pub type CredentialsLimit = $crate::runtime::clients::CredentialsLimit<Context>;
        /// `security: [{basicAuth: []}, {}]`: HTTP Basic credentials, if sent.
        pub type BasicCredentials = $crate::runtime::security::BasicCredentials;
    };
}

pub(crate) use api_aliases;

pub mod allocator;
pub mod auth;
pub mod calls;
pub mod clients;
pub mod config;
pub mod db;
pub mod dbspans;
pub mod delivery;
pub mod docs;
#[cfg(feature = "aws")]
pub mod dynamo;
pub mod etag;
pub mod events;
pub mod extract;
pub mod http;
pub mod inbox;
pub mod infra;
pub mod jwt_crypto;
pub mod logline;
pub mod logs;
pub mod metrics;
pub mod migrations;
pub mod money;
pub mod nats;
pub mod observe;
pub mod outbox;
pub mod pagination;
pub mod problem;
pub mod registry;
pub mod retention;
pub mod schema;
pub mod security;
pub mod server;
pub mod trace;

pub use db::Db;
pub use problem::{FieldError, Problem};

use serde_json::Value;

/// A service's published OpenAPI document, parsed once at start-up, with the compiled
/// checks of every operation.
#[derive(Debug)]
pub struct Spec {
    pub service: &'static str,
    /// The bundled YAML, exactly as committed.
    pub yaml: &'static str,
    /// The same document as JSON text.
    pub json: String,
    pub value: Value,
    /// `info.version`.
    pub version: String,
    /// Every operation's request checks, compiled from this document.
    pub validators: std::sync::Arc<extract::Validators>,
}

impl Spec {
    pub fn parse(service: &'static str, yaml: &'static str) -> anyhow::Result<Spec> {
        let value: Value = serde_yaml::from_str(yaml)?;
        let version = value
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let validators = extract::Validators::compile(&value)
            .map_err(|e| anyhow::anyhow!("{service}: compiling validators: {e}"))?
            .into();
        Ok(Spec {
            service,
            yaml,
            json: serde_json::to_string(&value)?,
            value,
            version,
            validators,
        })
    }
}

/// Where a service keeps its data, as far as the runtime is concerned: its SQL database
/// ([`Db`], every service's), or another store a service may offer instead (tasks on
/// DynamoDB). The infrastructure endpoints ask it for no more than this.
pub trait Store: Send + Sync + 'static {
    /// The service's metrics (kept with the store, which every part of a service holds).
    fn metrics(&self) -> &std::sync::Arc<metrics::Metrics>;
    /// The SQL database, when the data is in one: its pool and outbox are reported too.
    fn sql(&self) -> Option<&Db>;
    /// Reachable and ready for the service's queries; the error says what is wrong.
    fn ready(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>>;
}

impl Store for Db {
    fn metrics(&self) -> &std::sync::Arc<metrics::Metrics> {
        &self.metrics
    }
    fn sql(&self) -> Option<&Db> {
        Some(self)
    }
    fn ready(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(Db::ready(self))
    }
}

/// A service's context: its published spec, its store `D` (its SQL database unless it
/// offers another), how it checks callers, and its own state `S`.
pub struct Service<S, D = Db> {
    pub spec: Spec,
    pub db: D,
    /// The keys bearer tokens are verified with.
    pub keyring: std::sync::Arc<auth::Keyring>,
    /// The shared secret of `eventsAuth` operations, if configured.
    pub events_token: Option<String>,
    /// Client addresses and the `x-rate-limit` buckets.
    pub clients: clients::Clients,
    /// Where callers' accounts are kept, for the service that keeps them (users), which
    /// then trusts the stored account over the token's claims; `None` elsewhere.
    pub accounts: Option<std::sync::Arc<dyn security::Accounts>>,
    /// Where this service's spans go (OTLP when configured, else nowhere).
    pub tracer: std::sync::Arc<trace::Tracer>,
    pub state: S,
}

impl<S> Service<S> {
    /// Connects to (creating and migrating) the service's database and parses its spec.
    pub async fn open(
        config: &config::Config,
        def: &registry::ServiceDef,
        keyring: std::sync::Arc<auth::Keyring>,
        state: S,
    ) -> anyhow::Result<Service<S>> {
        let db = server::connect(config, def.name, def.migrator).await?;
        Service::open_on(config, def, keyring, state, db)
    }
}

impl<S, D: Store> Service<S, D> {
    /// [`Service::open`] on a store the service has opened itself.
    pub fn open_on(
        config: &config::Config,
        def: &registry::ServiceDef,
        keyring: std::sync::Arc<auth::Keyring>,
        state: S,
        db: D,
    ) -> anyhow::Result<Service<S, D>> {
        config.check_events()?;
        keyring.count_refreshes(&db.metrics().keyring_refreshes);
        let tracer = trace::Tracer::from_config(config, def.name)?;
        Ok(Service {
            spec: Spec::parse(def.name, def.spec)?,
            db,
            keyring,
            events_token: config.events_token.clone(),
            clients: clients::Clients::new(config),
            accounts: None,
            tracer,
            state,
        })
    }

    /// The same service with another state: for state that needs the opened service
    /// (its database, its spec) to be made.
    pub fn with_state<T>(self, state: T) -> Service<T, D> {
        Service {
            spec: self.spec,
            db: self.db,
            keyring: self.keyring,
            events_token: self.events_token,
            clients: self.clients,
            accounts: self.accounts,
            tracer: self.tracer,
            state,
        }
    }
}

impl<S> Service<S> {
    /// Prunes what `rules` say from this service's database every
    /// `PRUNE_INTERVAL_SECS`, for as long as the returned task is kept (in the state).
    pub fn prune(
        &self,
        config: &config::Config,
        rules: Vec<retention::Rule>,
        log: &slog::Logger,
    ) -> retention::Pruner {
        let every = std::time::Duration::from_secs(config.prune_interval_secs);
        let log = log.new(slog::o!("service" => self.spec.service));
        retention::Pruner::spawn(self.db.clone(), rules, every, &log)
    }
}

impl<S: Send + Sync + 'static, D: Store> ServiceContext for Service<S, D> {
    fn spec(&self) -> &Spec {
        &self.spec
    }
    fn store(&self) -> &dyn Store {
        &self.db
    }
    fn keyring(&self) -> &auth::Keyring {
        &self.keyring
    }
    fn events_token(&self) -> Option<&str> {
        self.events_token.as_deref()
    }
    fn clients(&self) -> &clients::Clients {
        &self.clients
    }
    fn accounts(&self) -> Option<&dyn security::Accounts> {
        self.accounts.as_deref()
    }
    fn tracer(&self) -> &std::sync::Arc<trace::Tracer> {
        &self.tracer
    }
}

/// What the endpoints that serve the spec itself (`/openapi.json`, `/openapi.yaml`,
/// `/docs`) need from a server's context: the spec. Every service has one, and so does
/// the mock server (`crate::mock`), which has no database or keys.
pub trait SpecContext: Send + Sync + 'static {
    fn served_spec(&self) -> &Spec;
}

impl<C: ServiceContext> SpecContext for C {
    fn served_spec(&self) -> &Spec {
        self.spec()
    }
}

/// What the runtime (validation, security, infrastructure endpoints) needs from a
/// service's context.
pub trait ServiceContext: Send + Sync + 'static {
    fn spec(&self) -> &Spec;
    fn store(&self) -> &dyn Store;
    fn keyring(&self) -> &auth::Keyring;
    fn events_token(&self) -> Option<&str>;
    fn clients(&self) -> &clients::Clients;
    /// The stored accounts callers are checked against, if this service keeps them.
    fn accounts(&self) -> Option<&dyn security::Accounts> {
        None
    }
    /// The service's metrics (kept with its store, which every part of a service
    /// already holds: relay, consumers, stores).
    fn metrics(&self) -> &std::sync::Arc<metrics::Metrics> {
        self.store().metrics()
    }
    /// Where the service's spans go.
    fn tracer(&self) -> &std::sync::Arc<trace::Tracer>;
}
