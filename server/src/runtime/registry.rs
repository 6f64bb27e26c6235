//! One definition per service. Each service module exports a `ServiceDef`; the list in
//! `crate::SERVICES` is the only place that names them all, and everything else is
//! derived from it: the CLI subcommands, `server all`, `migrate`, `healthcheck`, the
//! per-service settings (`<NAME>_PORT`, `<NAME>_DATABASE_URL`, `<NAME>_URL`), the built-in
//! gateway's routes and the served-document check.

use super::config::Config;
use anyhow::Result;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Base URLs of the services a service calls, by name.
pub type PeerUrls = BTreeMap<&'static str, String>;

/// How to start a service: with the configuration, its peers' URLs and the root logger.
pub type StartFn =
    for<'a> fn(&'a Config, &'a PeerUrls, &'a slog::Logger) -> BoxFuture<'a, Result<Running>>;

/// Everything the rest of the system needs to know about one service.
pub struct ServiceDef {
    /// Lower-case name: the subcommand, the settings' prefix, the database name suffix.
    pub name: &'static str,
    /// One line for `server --help`.
    pub about: &'static str,
    /// Default port.
    pub port: u16,
    /// The bundled OpenAPI document it serves (`openapi/bundled/<name>.yaml`).
    pub spec: &'static str,
    /// Its migrations (`migrations/<name>/`).
    pub migrator: &'static crate::runtime::migrations::Embedded,
    /// The services it calls (each must come before it in `SERVICES`); `server all`
    /// gives it their addresses, alone it reads `<PEER>_URL`.
    pub peers: &'static [&'static str],
    pub start: StartFn,
    /// The OpenAPI document dropshot derives from its trait, for `cargo xtask check`.
    pub served_openapi: fn() -> Result<serde_json::Value>,
}

impl ServiceDef {
    /// The settings' prefix: `promotions` -> `PROMOTIONS`.
    pub fn env_prefix(&self) -> String {
        self.name.to_ascii_uppercase().replace('-', "_")
    }

    /// The path prefixes its public operations live under (e.g. `/v1/tasks`,
    /// `/.well-known/`), from its spec: what the built-in gateway routes to it.
    /// Operations marked `x-internal` (between services only) are not routed.
    pub fn public_prefixes(&self) -> Result<Vec<String>> {
        let spec: serde_json::Value = serde_yaml::from_str(self.spec)?;
        let mut prefixes = Vec::new();
        for (path, item) in spec
            .get("paths")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            let public = ["get", "post", "put", "patch", "delete"].iter().any(|m| {
                item.get(*m).is_some_and(|op| {
                    op.get("x-internal").and_then(|v| v.as_bool()) != Some(true)
                        && !op
                            .get("tags")
                            .and_then(|t| t.as_array())
                            .is_some_and(|t| t.iter().any(|t| t == "infrastructure"))
                })
            });
            if !public {
                continue;
            }
            let prefix = route_prefix(path);
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        Ok(prefixes)
    }
}

/// The prefix a path is routed by: its first two segments (`/v1/tasks/{id}` ->
/// `/v1/tasks`), or its first one when that is all it has before a variable or when it
/// starts with a dot (`/.well-known/jwks.json` -> `/.well-known/`).
fn route_prefix(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments[0].starts_with('.') || segments.len() == 1 {
        return format!("/{}/", segments[0]).replace("//", "/");
    }
    let second = segments[1];
    if second.starts_with('{') {
        format!("/{}/", segments[0])
    } else {
        format!("/{}/{}", segments[0], second)
    }
}

/// The service named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static ServiceDef> {
    crate::SERVICES.iter().copied().find(|s| s.name == name)
}

/// The service named `name`, or an error that lists the services there are.
pub fn named(name: &str) -> Result<&'static ServiceDef> {
    find(name).ok_or_else(|| anyhow::anyhow!("unknown service {name:?}; one of {}", names()))
}

/// Every service's name, comma-separated (for messages).
pub fn names() -> String {
    crate::SERVICES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A [`StartFn`] from a service's `async fn start(&Config, &PeerUrls, &Logger) ->
/// anyhow::Result<HttpServer<C>>` (typed, for tests that want the server itself).
#[macro_export]
macro_rules! start_fn {
    ($name:expr, $start:path) => {{
        fn boxed_start<'a>(
            config: &'a $crate::runtime::config::Config,
            peers: &'a $crate::runtime::registry::PeerUrls,
            log: &'a slog::Logger,
        ) -> futures::future::BoxFuture<'a, anyhow::Result<$crate::runtime::registry::Running>>
        {
            Box::pin(async move {
                Ok($crate::runtime::registry::Running::new(
                    $name,
                    $start(config, peers, log).await?,
                ))
            })
        }
        boxed_start
    }};
}

/// A start-up failure that means this machine cannot run the service at all (a missing
/// system component, say), as opposed to a mistake in its configuration: `server all`
/// goes on without that service, saying why, and the gateway answers its paths with 503.
/// Started alone, the service still refuses to start.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A running server, whatever its context type: where it listens, and how to stop it.
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub close: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>,
}

impl Running {
    pub fn new<C: dropshot::ServerContext>(
        name: &'static str,
        server: dropshot::HttpServer<C>,
    ) -> Self {
        Running {
            name,
            addr: server.local_addr(),
            // Runs only when awaited, at shutdown.
            close: Box::pin(async move { server.close().await }),
        }
    }
}

/// The base URL of `peer` for a service started alone: its `<PEER>_URL` setting.
pub fn peer_urls(config: &Config, def: &ServiceDef) -> PeerUrls {
    def.peers
        .iter()
        .map(|peer| (*peer, config.service(peer).url.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_prefixes() {
        assert_eq!(route_prefix("/v1/tasks/{task_id}"), "/v1/tasks");
        assert_eq!(route_prefix("/v1/tasks"), "/v1/tasks");
        assert_eq!(route_prefix("/.well-known/jwks.json"), "/.well-known/");
        assert_eq!(route_prefix("/v1/{x}"), "/v1/");
    }

    #[test]
    fn an_unknown_service_is_an_error_that_lists_the_known_ones() {
        assert_eq!(named("tasks").unwrap().name, "tasks");
        let error = named("nope")
            .err()
            .expect("no service is named nope")
            .to_string();
        assert!(
            error.starts_with("unknown service \"nope\"; one of users, "),
            "{error}"
        );
        assert!(error.contains("tasks"), "{error}");
    }

    #[test]
    fn peers_come_first_and_names_are_unique() {
        let mut seen: Vec<&str> = Vec::new();
        for def in crate::SERVICES {
            assert!(!seen.contains(&def.name), "{} listed twice", def.name);
            for peer in def.peers {
                assert!(
                    seen.contains(peer),
                    "{} calls {peer}, which must come before it",
                    def.name
                );
            }
            seen.push(def.name);
        }
        let mut ports: Vec<u16> = crate::SERVICES.iter().map(|s| s.port).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), crate::SERVICES.len(), "default ports clash");
    }
}
