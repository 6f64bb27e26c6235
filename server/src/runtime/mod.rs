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

/// The glue of a service whose own state is just a `Keyring` (it checks tokens with the
/// users service's keys): its context type, `connect`, `start` and `served_openapi`. The
/// module defines `NAME`, `MIGRATOR` and `api`.
macro_rules! keyring_service {
    ($context:ident, $handlers:ty, $api_mod:ident) => {
        pub type $context = $crate::runtime::Service<$crate::runtime::auth::Keyring>;

        pub async fn connect(
            config: &$crate::runtime::config::Config,
        ) -> anyhow::Result<$crate::runtime::Db> {
            $crate::runtime::server::connect(config, NAME, &MIGRATOR).await
        }

        /// Starts the service; `users_url` is where the users service publishes its keys.
        pub async fn start(
            config: &$crate::runtime::config::Config,
            users_url: &str,
            log: &slog::Logger,
        ) -> anyhow::Result<dropshot::HttpServer<$context>> {
            let keyring =
                $crate::runtime::auth::Keyring::remote(users_url, config.service_timeout())?;
            let context =
                $crate::runtime::Service::open(config, NAME, api::SPEC_YAML, &MIGRATOR, keyring)
                    .await?;
            $crate::runtime::server::start(
                api::$api_mod::api_description::<$handlers>(),
                context,
                config,
                log,
            )
        }

        /// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
        pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
            $crate::runtime::server::served_openapi(api::$api_mod::stub_api_description(), NAME)
        }
    };
}

pub(crate) use keyring_service;

pub mod auth;
pub mod config;
pub mod db;
pub mod docs;
pub mod etag;
pub mod extract;
pub mod http;
pub mod infra;
pub mod money;
pub mod nats;
pub mod outbox;
pub mod pagination;
pub mod problem;
pub mod server;

pub use db::Db;
pub use extract::{OptionalBody, ValidatedBody, ValidatedHeaders, ValidatedPath, ValidatedQuery};
pub use problem::{FieldError, Problem};

use serde_json::Value;

/// A service's published OpenAPI document, parsed once at start-up.
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
}

impl Spec {
    pub fn parse(service: &'static str, yaml: &'static str) -> anyhow::Result<Spec> {
        let value: Value = serde_yaml::from_str(yaml)?;
        let version = value
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        Ok(Spec {
            service,
            yaml,
            json: serde_json::to_string(&value)?,
            value,
            version,
        })
    }
}

/// A service's context: its published spec, its database, and its own state `S`.
pub struct Service<S> {
    pub spec: Spec,
    pub db: Db,
    pub state: S,
}

impl<S> Service<S> {
    /// Connects to (creating and migrating) the service's database and parses its spec.
    pub async fn open(
        config: &config::Config,
        service: &'static str,
        yaml: &'static str,
        migrator: &'static sqlx::migrate::Migrator,
        state: S,
    ) -> anyhow::Result<Service<S>> {
        Ok(Service {
            spec: Spec::parse(service, yaml)?,
            db: server::connect(config, service, migrator).await?,
            state,
        })
    }
}

impl<S: Send + Sync + 'static> ServiceContext for Service<S> {
    fn spec(&self) -> &Spec {
        &self.spec
    }
    fn db(&self) -> &Db {
        &self.db
    }
}

/// What the runtime needs from a service's context.
pub trait ServiceContext: Send + Sync + 'static {
    fn spec(&self) -> &Spec;
    fn db(&self) -> &Db;
}
