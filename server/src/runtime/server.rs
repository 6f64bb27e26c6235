//! Starting one service: its API (generated trait + unpublished spec endpoints), its
//! request validators, and a dropshot server on its port.

use super::config::Config;
use super::{infra, ServiceContext, Spec};
use anyhow::{Context, Result};
use dropshot::{
    ApiDescription, ApiDescriptionBuildErrors, ConfigDropshot, HandlerTaskMode, HttpServer,
    ServerBuilder,
};
use slog::Logger;

/// How log lines are written to stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    #[default]
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

/// The root logger: JSON or text lines on stdout, written by a background thread so a
/// slow terminal or pipe never stalls request handling (lines are dropped, and counted,
/// if it falls far behind). JSON lines are encoded where they are logged
/// ([`super::logs`]).
pub fn logger(level: &str, format: LogFormat) -> Result<Logger> {
    use slog::Drain;
    let level: slog::Level = level.parse().map_err(|_| {
        anyhow::anyhow!(
            "LOG_LEVEL: {level:?} is not one of trace, debug, info, warning, error, critical"
        )
    })?;
    let drain: Box<
        dyn slog::SendSyncRefUnwindSafeDrain<Ok = (), Err = slog::Never> + std::panic::UnwindSafe,
    > = match format {
        LogFormat::Json => Box::new(super::logs::JsonLines::stdout()?),
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(std::io::stdout());
            let lines = slog_term::CompactFormat::new(decorator).build().fuse();
            Box::new(
                slog_async::Async::new(lines)
                    .chan_size(8192)
                    .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
                    .thread_name("taproom-log".into())
                    .build()
                    .fuse(),
            )
        }
    };
    Ok(Logger::root(drain.filter_level(level).fuse(), slog::o!()))
}

/// Connects to a service's database (creating and migrating it as needed).
pub async fn connect(
    config: &Config,
    service: &str,
    migrator: &'static sqlx::migrate::Migrator,
) -> Result<super::Db> {
    super::Db::connect(
        &config.database_url(service)?,
        config.database_max_connections,
        config.sqlite_synchronous,
        migrator,
    )
    .await
}

/// The OpenAPI document dropshot derives from a service's trait (its stub description),
/// for `cargo xtask check` to compare with the YAML.
pub fn served_openapi<C: dropshot::ServerContext>(
    api: Result<ApiDescription<C>, ApiDescriptionBuildErrors>,
    service: &str,
) -> Result<serde_json::Value> {
    let api = api.map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
    Ok(api.openapi(service, semver::Version::new(1, 0, 0)).json()?)
}

pub fn start<C: ServiceContext>(
    api: Result<ApiDescription<C>, ApiDescriptionBuildErrors>,
    context: C,
    config: &Config,
    log: &Logger,
) -> Result<HttpServer<C>> {
    let service = context.spec().service;
    let mut api = api.map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
    fail_closed(&api, context.spec()).with_context(|| format!("{service}: refusing to start"))?;
    let routes = published_routes(&context.spec().value);
    for endpoint in infra::endpoints()
        .into_iter()
        .chain(super::docs::endpoints())
        .chain([super::metrics::endpoint()])
    {
        api.register(endpoint)
            .map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
    }
    super::trace::install();
    let observer = config.telemetry.then(|| {
        std::sync::Arc::new(super::observe::Observer {
            metrics: context.metrics().clone(),
            tracer: context.tracer().clone(),
        })
    });
    serve(
        api,
        context,
        config,
        log,
        (service, config.bind(service)),
        &routes,
        observer,
    )
}

/// Every operation the API serves must have compiled checks in the spec it validates
/// against, and every operation of that spec must be served: an operation the YAML does
/// not describe is never served unvalidated.
pub fn fail_closed<C: dropshot::ServerContext>(api: &ApiDescription<C>, spec: &Spec) -> Result<()> {
    let served = api
        .openapi(spec.service, semver::Version::new(1, 0, 0))
        .json()?;
    let mut served_ids = Vec::new();
    for item in served
        .get("paths")
        .and_then(|p| p.as_object())
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = op.get("operationId").and_then(|i| i.as_str()) {
                served_ids.push(id.to_string());
            }
        }
    }
    for id in &served_ids {
        anyhow::ensure!(
            spec.validators.get(id).is_some(),
            "operation {id} has no validator: {} does not describe it",
            spec.service
        );
    }
    for id in spec.validators.operation_ids() {
        anyhow::ensure!(
            served_ids.iter().any(|s| s == id),
            "operation {id} of the spec is not served"
        );
    }
    Ok(())
}

/// Serves `api` on `bind` with the runtime's server settings and response hook (`routes`:
/// what the `Allow` header of a 405 lists).
pub fn listen<C: dropshot::ServerContext>(
    api: ApiDescription<C>,
    context: C,
    config: &Config,
    log: &Logger,
    name: &str,
    bind: std::net::SocketAddr,
    routes: &[(String, String)],
) -> Result<HttpServer<C>> {
    serve(api, context, config, log, (name, bind), routes, None)
}

/// [`listen`], with `observer` following every request (services have one: metrics and
/// tracing; the gateway and the mock server do not).
fn serve<C: dropshot::ServerContext>(
    api: ApiDescription<C>,
    context: C,
    config: &Config,
    log: &Logger,
    (name, bind): (&str, std::net::SocketAddr),
    routes: &[(String, String)],
    observer: Option<std::sync::Arc<super::observe::Observer>>,
) -> Result<HttpServer<C>> {
    let mut builder = ServerBuilder::new(
        api,
        context,
        log.new(slog::o!("service" => name.to_string())),
    )
    .config(ConfigDropshot {
        bind_address: bind,
        default_request_body_max_bytes: config.request_body_max_bytes,
        // A client that hangs up must not cancel a handler halfway through a write; a
        // read (GET, HEAD, OPTIONS) writes nothing, so it runs on the connection's task.
        default_handler_task_mode: HandlerTaskMode::DetachedUnlessSafe,
        ..Default::default()
    })
    .connection_limits(config.limits.connection_limits())
    .response_hook(std::sync::Arc::new(super::http::Hook::new(
        config.cors_allowed_origins.clone(),
        routes,
    )));
    if let Some(observer) = observer {
        builder = builder.request_hook(observer);
    }
    builder
        .start()
        .map_err(|e| anyhow::anyhow!("{name}: cannot listen on {bind}: {e}"))
}

/// Every (path, METHOD) in a spec, plus the unpublished documentation endpoints.
fn published_routes(spec: &serde_json::Value) -> Vec<(String, String)> {
    let mut routes = vec![
        ("/openapi.json".to_string(), "GET".to_string()),
        ("/openapi.yaml".to_string(), "GET".to_string()),
        ("/docs".to_string(), "GET".to_string()),
        ("/docs/{asset}".to_string(), "GET".to_string()),
        ("/gateway/docs".to_string(), "GET".to_string()),
        ("/gateway/openapi.json".to_string(), "GET".to_string()),
    ];
    for (path, item) in spec
        .get("paths")
        .and_then(|p| p.as_object())
        .into_iter()
        .flatten()
    {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.push((path.clone(), method.to_uppercase()));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tasks spec with one operation taken out.
    fn tasks_spec_without(operation_id: &str) -> Spec {
        let mut value: serde_json::Value =
            serde_yaml::from_str(crate::tasks::api::SPEC_YAML).unwrap();
        for item in value["paths"].as_object_mut().unwrap().values_mut() {
            let item = item.as_object_mut().unwrap();
            item.retain(|_, op| {
                op.get("operationId").and_then(|i| i.as_str()) != Some(operation_id)
            });
        }
        let yaml: &'static str = Box::leak(serde_yaml::to_string(&value).unwrap().into_boxed_str());
        Spec::parse("tasks", yaml).unwrap()
    }

    #[test]
    fn an_operation_the_spec_does_not_describe_stops_start_up() {
        let api = crate::tasks::api::tasks_api_mod::stub_api_description().unwrap();
        let whole = Spec::parse("tasks", crate::tasks::api::SPEC_YAML).unwrap();
        fail_closed(&api, &whole).unwrap();
        let error = fail_closed(&api, &tasks_spec_without("delete_task"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("delete_task") && error.contains("no validator"),
            "{error}"
        );
    }

    #[test]
    fn an_operation_of_the_spec_that_is_not_served_stops_start_up() {
        let mut api = crate::tasks::api::tasks_api_mod::stub_api_description().unwrap();
        let spec = Spec::parse("beers", crate::beers::api::SPEC_YAML).unwrap();
        // The beers document describes operations the tasks trait does not serve.
        let error = fail_closed(&api, &spec).unwrap_err().to_string();
        assert!(error.contains("list_tasks has no validator"), "{error}");
        // And an API with nothing but unpublished endpoints serves none of the spec.
        api = ApiDescription::new();
        let error = fail_closed(&api, &spec).unwrap_err().to_string();
        assert!(error.contains("is not served"), "{error}");
    }

    #[test]
    fn two_specs_with_one_operation_id_each_validate_their_own_way() {
        let spec = |max: u32| {
            let yaml = format!(
                "openapi: 3.0.3\ninfo: {{title: t, version: 1.0.0}}\npaths:\n  /things:\n    post:\n      operationId: create_thing\n      security: []\n      requestBody:\n        required: true\n        content:\n          application/json:\n            schema:\n              type: object\n              properties:\n                name: {{type: string, maxLength: {max}}}\n      responses:\n        '201': {{description: made}}\n"
            );
            Spec::parse("things", Box::leak(yaml.into_boxed_str())).unwrap()
        };
        let (short, long) = (spec(3), spec(10));
        let body = serde_json::json!({"name": "seven!!"});
        assert_eq!(
            short.validators.validate_body("create_thing", &body).len(),
            1
        );
        assert!(long
            .validators
            .validate_body("create_thing", &body)
            .is_empty());
        // An operation a spec does not have is never taken as valid.
        assert!(!long
            .validators
            .validate_body("delete_thing", &body)
            .is_empty());
    }
}
