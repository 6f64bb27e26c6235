//! `server`: runs Taproom's services. `server --help` lists every setting; each can
//! also come from the environment or a `.env` file.

use anyhow::Result;
use clap::{Parser, Subcommand};
use taproom_server::runtime::config::Config;
use taproom_server::runtime::server::logger;
use taproom_server::{tasks, users};

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
    /// Run the tasks service (verifies tokens with the users service at USERS_URL).
    Tasks,
    /// Create or upgrade every service's database, then exit.
    Migrate,
    /// Manage accounts from the command line.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Exit 0 when every service answers 200 on /readyz at its configured port (for
    /// container health checks, which have no curl in the runtime image).
    Healthcheck,
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
                tasks::NAME => tasks::served_openapi()?,
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
        Command::Healthcheck => {
            let host = match config.bind_address {
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            let client =
                taproom_client::users::Client::new(&format!("http://{host}:{}", config.users_port));
            client
                .readyz()
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("users not ready: {e}"))?;
            let client =
                taproom_client::tasks::Client::new(&format!("http://{host}:{}", config.tasks_port));
            client
                .readyz()
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("tasks not ready: {e}"))?;
            println!("users, tasks: ready");
            Ok(())
        }
        Command::Migrate => {
            users::connect(&config).await?;
            println!("users: migrated");
            tasks::connect(&config).await?;
            println!("tasks: migrated");
            Ok(())
        }
        command @ (Command::All | Command::Users | Command::Tasks) => {
            let log = logger(&config.log_level, config.log_format)?;
            let mut running = Vec::new();
            let mut users_url = config.users_url.clone();
            if matches!(command, Command::All | Command::Users) {
                let server = users::start(&config, &log).await?;
                users_url = format!("http://{}", server.local_addr());
                running.push(Running::Users(server));
            }
            if matches!(command, Command::All | Command::Tasks) {
                running.push(Running::Tasks(
                    tasks::start(&config, &users_url, &log).await?,
                ));
            }
            for service in &running {
                // For the person at the terminal; stdout carries the JSON log.
                let (name, addr) = service.describe();
                eprintln!("{name:<10} listening on http://{addr}  docs: http://{addr}/docs");
            }
            shutdown_signal().await;
            // Stop accepting; requests already in flight finish, up to the deadline.
            slog::info!(log, "shutting down"; "deadline_secs" => config.shutdown_timeout_secs);
            let deadline = std::time::Duration::from_secs(config.shutdown_timeout_secs);
            let closing = futures::future::join_all(running.into_iter().map(Running::close));
            match tokio::time::timeout(deadline, closing).await {
                Ok(results) => results.into_iter().collect::<Result<Vec<()>>>().map(|_| ()),
                Err(_) => anyhow::bail!(
                    "in-flight requests still running after {}s; exiting anyway",
                    deadline.as_secs()
                ),
            }
        }
    }
}

/// A running service, whatever its context type.
enum Running {
    Users(dropshot::HttpServer<users::UsersContext>),
    Tasks(dropshot::HttpServer<tasks::TasksContext>),
}

impl Running {
    fn describe(&self) -> (&'static str, std::net::SocketAddr) {
        match self {
            Running::Users(s) => (users::NAME, s.local_addr()),
            Running::Tasks(s) => (tasks::NAME, s.local_addr()),
        }
    }

    async fn close(self) -> Result<()> {
        match self {
            Running::Users(s) => s.close().await,
            Running::Tasks(s) => s.close().await,
        }
        .map_err(|e| anyhow::anyhow!(e))
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
