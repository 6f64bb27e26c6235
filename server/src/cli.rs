//! The `server` command line: runs Taproom's services. `server --help` lists every
//! setting; each can also come from the environment or a `.env` file.
//!
//! It lives in the library, not in `main.rs`: with optimisations on, rustc does not share
//! generic code between crates, so a binary crate would compile again everything this
//! instantiates (clap, tokio's runtime, the start-up futures) after the library, on one
//! core, at the end of every fresh build.

use crate::runtime::config::Config;
use crate::runtime::registry::{self, PeerUrls, Running, ServiceDef};
use crate::runtime::server::logger;
use crate::runtime::SpecContext;
use crate::{gateway, mock, users, SERVICES};
use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "server", version, about = "Taproom: spec-first microservices", long_about = None)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

/// The commands besides one per service (`server <service>`, added from the service
/// list at start-up).
#[derive(Subcommand)]
enum Command {
    /// Run every service, each on its own port with its own database.
    All,
    /// Create or upgrade every service's database, then exit.
    Migrate,
    /// Manage accounts from the command line.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Exit 0 when the named services (default: all) answer 200 on /readyz at their
    /// configured ports (for container health checks; the image has no curl).
    Healthcheck {
        /// Services to check, e.g. `orders`.
        services: Vec<String>,
    },
    /// Serve a spec from its examples, with the real services' request validation and
    /// problems: nothing is stored and no credential is verified (any Authorization
    /// header will do). `Prefer: code=404` or `Prefer: example=<name>` pick the answer.
    Mock {
        /// A service (its embedded spec, on its configured port) or a bundled OpenAPI 3.0
        /// YAML/JSON file (local `#/components` refs only; port 4010).
        target: String,
        /// Port to listen on (0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run one service as an AWS Lambda function (API Gateway REST or HTTP API, function
    /// URLs), under the runtime API at AWS_LAMBDA_RUNTIME_API. Needs `--features aws`.
    Lambda {
        /// The service, e.g. `tasks`.
        service: String,
    },
    /// Print the OpenAPI document dropshot derives from a service's trait (used by
    /// `cargo xtask check` to compare it with the YAML).
    #[command(hide = true)]
    ServedOpenapi { service: String },
    /// One service, by name (a subcommand per entry of the service list).
    #[command(skip)]
    Service(&'static ServiceDef),
}

impl Cli {
    /// Parses the command line, with a subcommand for each service.
    fn parse_with_services() -> Cli {
        let mut command = Cli::command();
        for def in SERVICES {
            let peers = if def.peers.is_empty() {
                String::new()
            } else {
                let urls: Vec<String> = def
                    .peers
                    .iter()
                    .map(|p| format!("{}_URL", p.to_ascii_uppercase()))
                    .collect();
                format!(" (calls {})", urls.join(", "))
            };
            command = command.subcommand(clap::Command::new(def.name).about(format!(
                "Run the {} service: {}{peers}",
                def.name, def.about
            )));
        }
        let matches = command.get_matches();
        let config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let service = matches.subcommand_name().and_then(registry::find);
        let command = match service {
            Some(def) => Command::Service(def),
            None => Command::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
        };
        Cli { config, command }
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account (the first admin is made this way). The password comes
    /// from TAPROOM_ADMIN_PASSWORD, or is asked for on the terminal.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
    },
    /// Make a new token-signing key; it signs from now on. The old key stays published
    /// until every token it signed has expired (TOKEN_TTL_SECS), then is dropped.
    RotateKeys {
        /// Delete the old keys at once: tokens they signed stop verifying (a key that may
        /// have leaked). Everyone logs in again.
        #[arg(long)]
        revoke: bool,
    },
}

/// `server`'s entry point: parses the command line and runs the command on a
/// multi-threaded tokio runtime.
pub fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("error: tokio runtime: {e}");
            std::process::exit(1);
        });
    runtime.block_on(start());
}

async fn start() {
    crate::runtime::jwt_crypto::install();
    // A missing .env is fine; a malformed one is not.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: .env: {e}");
            std::process::exit(2);
        }
    }
    let cli = Cli::parse_with_services();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    match cli.command {
        Command::ServedOpenapi { service } => {
            let def = registry::named(&service)?;
            let doc = (def.served_openapi)()?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Lambda { service } => {
            let def = registry::named(&service)?;
            lambda(def, config).await
        }
        Command::Admin {
            command: AdminCommand::Create { username, email },
        } => {
            let password = match std::env::var("TAPROOM_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => rpassword::prompt_password(format!("Password for {username}: "))?,
            };
            let user = users::create_admin(&config, &username, &email, password).await?;
            println!("created admin {} ({})", user.username, user.id);
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::RotateKeys { revoke },
        } => {
            let rotation = users::rotate_keys(&config, revoke).await?;
            println!("new signing key {}", rotation.new_kid);
            for kid in &rotation.old_kids {
                if revoke {
                    println!("revoked {kid}");
                } else {
                    let keep = config.token_ttl_secs + users::RETIRED_KEY_GRACE.as_secs();
                    println!("retired {kid}: published for {keep} s more, until its tokens expire");
                }
            }
            if rotation.expired > 0 {
                println!(
                    "dropped {} key(s) whose tokens have all expired",
                    rotation.expired
                );
            }
            Ok(())
        }
        Command::Healthcheck { services } => {
            let host = match config.bind_address {
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            // Every service shares the infrastructure operations; the users client's
            // `readyz` asks any of them.
            let defs: Vec<&ServiceDef> = if services.is_empty() {
                SERVICES.to_vec()
            } else {
                services
                    .iter()
                    .map(|name| registry::named(name))
                    .collect::<Result<_>>()?
            };
            for def in &defs {
                let url = format!("http://{host}:{}", config.service(def.name).port);
                taproom_client::users::Client::new(&url, Default::default())
                    .readyz()
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{} not ready: {e}", def.name))?;
            }
            let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
            println!("{}: ready", names.join(", "));
            Ok(())
        }
        Command::Mock { target, port } => {
            let log = logger(&config.log_level, config.log_format)?;
            let server = mock::start_target(&target, port, &config, &log)?;
            let addr = server.local_addr();
            let name = format!("{} mock", server.app_private().served_spec().service);
            eprintln!("{name:<10} listening on http://{addr}  docs: http://{addr}/docs");
            shutdown_signal().await;
            server.close().await.map_err(|e| anyhow::anyhow!(e))
        }
        Command::Migrate => {
            for def in SERVICES {
                // A DynamoDB table has no migrations: the service checks it when it starts.
                if config.database_url(def.name)?.starts_with("dynamodb://") {
                    continue;
                }
                crate::runtime::server::connect(&config, def.name, def.migrator).await?;
            }
            println!("{}: migrated", registry::names());
            Ok(())
        }
        command @ (Command::All | Command::Service(_)) => {
            let mut config = config;
            let log = logger(&config.log_level, config.log_format)?;
            let all = matches!(command, Command::All);
            if all && config.events_token.is_none() {
                // One process: its services share a secret nobody else knows.
                config.events_token = Some(uuid::Uuid::new_v4().simple().to_string());
            }
            let mut running: Vec<Running> = Vec::new();
            for def in SERVICES {
                if !all && !matches!(command, Command::Service(d) if d.name == def.name) {
                    continue;
                }
                // Alone, a service finds its peers at `<PEER>_URL`; in `server all`, at the
                // instances this process started (the list puts peers first).
                let mut peers: PeerUrls = registry::peer_urls(&config, def);
                for r in &running {
                    if let Some(url) = peers.get_mut(r.name) {
                        *url = format!("http://{}", r.addr);
                    }
                }
                match (def.start)(&config, &peers, &log).await {
                    Ok(started) => running.push(started),
                    Err(e) if all && e.is::<registry::Unavailable>() => {
                        slog::error!(log, "service not started"; "service" => def.name, "reason" => %e);
                        eprintln!("{:<10} NOT STARTED: {e}", def.name);
                    }
                    Err(e) => return Err(e),
                }
            }
            if all && config.gateway {
                let upstreams = running
                    .iter()
                    .map(|r| (r.name, format!("http://{}", r.addr)))
                    .collect();
                let server = gateway::start(&config, upstreams, &log)?;
                running.insert(0, Running::new("gateway", server));
            }
            for service in &running {
                // For the person at the terminal; stdout carries the JSON log.
                let (name, addr) = (service.name, service.addr);
                eprintln!("{name:<10} listening on http://{addr}  docs: http://{addr}/docs");
            }
            shutdown_signal().await;
            // Stop accepting; requests already in flight finish, up to the deadline.
            slog::info!(log, "shutting down"; "deadline_secs" => config.shutdown_timeout_secs);
            let deadline = std::time::Duration::from_secs(config.shutdown_timeout_secs);
            let closing = futures::future::join_all(running.into_iter().map(|r| r.close));
            match tokio::time::timeout(deadline, closing).await {
                Ok(results) => results
                    .into_iter()
                    .collect::<Result<Vec<()>, String>>()
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!(e)),
                Err(_) => anyhow::bail!(
                    "in-flight requests still running after {}s; exiting anyway",
                    deadline.as_secs()
                ),
            }
        }
    }
}

#[cfg(feature = "aws")]
async fn lambda(def: &'static ServiceDef, config: Config) -> Result<()> {
    let log = logger(&config.log_level, config.log_format)?;
    crate::lambda::run(def, config, &log).await
}

#[cfg(not(feature = "aws"))]
async fn lambda(def: &'static ServiceDef, _: Config) -> Result<()> {
    anyhow::bail!(
        "{}: Lambda mode needs a server built with `cargo build --features aws`",
        def.name
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
