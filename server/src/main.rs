//! `server`: runs Taproom's services. `server --help` lists every setting; each can
//! also come from the environment or a `.env` file.

use anyhow::Result;
use clap::{Parser, Subcommand};
use taproom_server::runtime::config::Config;
use taproom_server::runtime::server::logger;
use taproom_server::{beers, gateway, orders, promotions, tasks, users};

#[derive(Parser)]
#[command(name = "server", version, about = "Taproom: spec-first microservices", long_about = None)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service, each on its own port with its own database.
    All,
    /// Run the users service.
    Users,
    /// Run the beers service (verifies tokens with the users service at USERS_URL).
    Beers,
    /// Run the orders service (tokens checked with USERS_URL, beers looked up at BEERS_URL).
    Orders,
    /// Run the tasks service (verifies tokens with the users service at USERS_URL).
    Tasks,
    /// Run the promotions service (tokens checked with USERS_URL; events over HTTP with
    /// EVENTS_TOKEN, or from NATS_URL).
    Promotions,
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
    /// Print the OpenAPI document dropshot derives from a service's trait (used by
    /// `cargo xtask check` to compare it with the YAML).
    #[command(hide = true)]
    ServedOpenapi { service: String },
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
}

#[tokio::main]
async fn main() {
    // A missing .env is fine; a malformed one is not.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: .env: {e}");
            std::process::exit(2);
        }
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    match cli.command {
        Command::ServedOpenapi { service } => {
            let doc = match service.as_str() {
                users::NAME => users::served_openapi()?,
                beers::NAME => beers::served_openapi()?,
                orders::NAME => orders::served_openapi()?,
                tasks::NAME => tasks::served_openapi()?,
                promotions::NAME => promotions::served_openapi()?,
                other => anyhow::bail!("unknown service {other:?}"),
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
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
        Command::Healthcheck { services } => {
            let host = match config.bind_address {
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            // Every service shares the infrastructure operations; the users client's
            // `readyz` asks any of them.
            let services: Vec<&str> = if services.is_empty() {
                taproom_server::SERVICES.to_vec()
            } else {
                services.iter().map(String::as_str).collect()
            };
            for service in &services {
                anyhow::ensure!(
                    taproom_server::SERVICES.contains(service),
                    "unknown service {service:?}; one of {}",
                    taproom_server::SERVICES.join(", ")
                );
                let url = format!("http://{host}:{}", config.port(service));
                taproom_client::users::Client::new(&url)
                    .readyz()
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{service} not ready: {e}"))?;
            }
            println!("{}: ready", services.join(", "));
            Ok(())
        }
        Command::Migrate => {
            users::connect(&config).await?;
            beers::connect(&config).await?;
            orders::connect(&config).await?;
            tasks::connect(&config).await?;
            promotions::connect(&config).await?;
            println!("{}: migrated", taproom_server::SERVICES.join(", "));
            Ok(())
        }
        command @ (Command::All
        | Command::Users
        | Command::Beers
        | Command::Orders
        | Command::Tasks
        | Command::Promotions) => {
            let mut config = config;
            let log = logger(&config.log_level, config.log_format)?;
            let all = matches!(command, Command::All);
            if all && config.events_token.is_none() {
                // One process: orders and promotions share a secret nobody else knows.
                config.events_token = Some(uuid::Uuid::new_v4().simple().to_string());
            }
            let mut running = Vec::new();
            let mut users_url = config.users_url.clone();
            let mut beers_url = config.beers_url.clone();
            let mut promotions_url = config.promotions_url.clone();
            if all || matches!(command, Command::Users) {
                let server = users::start(&config, &log).await?;
                users_url = format!("http://{}", server.local_addr());
                running.push(Running::new(users::NAME, server));
            }
            if all || matches!(command, Command::Beers) {
                let server = beers::start(&config, &users_url, &log).await?;
                beers_url = format!("http://{}", server.local_addr());
                running.push(Running::new(beers::NAME, server));
            }
            if all || matches!(command, Command::Promotions) {
                let server = promotions::start(&config, &users_url, &log).await?;
                promotions_url = format!("http://{}", server.local_addr());
                running.push(Running::new(promotions::NAME, server));
            }
            if all || matches!(command, Command::Orders) {
                let peers = orders::PeerUrls {
                    users: users_url.clone(),
                    beers: beers_url.clone(),
                    promotions: promotions_url.clone(),
                };
                let server = orders::start(&config, &peers, &log).await?;
                running.push(Running::new(orders::NAME, server));
            }
            if all || matches!(command, Command::Tasks) {
                let server = tasks::start(&config, &users_url, &log).await?;
                running.push(Running::new(tasks::NAME, server));
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

/// A running service, whatever its context type: where it listens, and how to stop it.
struct Running {
    name: &'static str,
    addr: std::net::SocketAddr,
    close: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>,
}

impl Running {
    fn new<C: dropshot::ServerContext>(
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
