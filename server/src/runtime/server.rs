//! Starting one service: its API (generated trait + unpublished spec endpoints), its
//! request validators, and a dropshot server on its port.

use super::config::Config;
use super::{extract, infra, ServiceContext};
use anyhow::{Context, Result};
use dropshot::{
    ApiDescription, ApiDescriptionBuildErrors, ConfigDropshot, HandlerTaskMode, HttpServer,
    ServerBuilder,
};
use slog::Logger;

pub fn logger(level: &str) -> Result<Logger> {
    let level = serde_json::from_value(serde_json::Value::String(level.to_ascii_lowercase()))
        .map_err(|_| {
            anyhow::anyhow!(
                "LOG_LEVEL: {level:?} is not one of trace, debug, info, warn, error, critical"
            )
        })?;
    dropshot::ConfigLogging::StderrTerminal { level }
        .to_logger("taproom")
        .context("creating the logger")
}

pub fn start<C: ServiceContext>(
    api: Result<ApiDescription<C>, ApiDescriptionBuildErrors>,
    context: C,
    config: &Config,
    log: &Logger,
) -> Result<HttpServer<C>> {
    let service = context.spec().service;
    extract::register_spec(&context.spec().value)
        .with_context(|| format!("{service}: compiling validators"))?;
    let mut api = api.map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
    infra::register_spec_endpoints(&mut api)?;
    super::docs::register(&mut api)?;
    let bind = config.bind(service);
    let server = ServerBuilder::new(api, context, log.new(slog::o!("service" => service)))
        .config(ConfigDropshot {
            bind_address: bind,
            default_request_body_max_bytes: config.request_body_max_bytes,
            // A client that hangs up must not cancel a handler halfway through a write.
            default_handler_task_mode: HandlerTaskMode::Detached,
            ..Default::default()
        })
        .start()
        .map_err(|e| anyhow::anyhow!("{service}: cannot listen on {bind}: {e}"))?;
    Ok(server)
}
