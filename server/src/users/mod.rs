//! The users service: accounts, passwords, tokens and roles (port 5001).

pub mod api;
mod handlers;
mod login;
mod store;
mod tokens;

use crate::runtime::config::Config;
use crate::runtime::{server, Db, Service, Spec};
use dropshot::HttpServer;

pub const NAME: &str = "users";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/users");

/// The users service's context: its own state is the token keys.
pub type UsersContext = Service<tokens::Tokens>;

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    server::connect(config, NAME, &MIGRATOR).await
}

pub async fn start(
    config: &Config,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<UsersContext>> {
    let db = connect(config).await?;
    let tokens = tokens::Tokens::load(&db, config.token_ttl_secs).await?;
    let context = Service {
        spec: Spec::parse(NAME, api::SPEC_YAML)?,
        db,
        state: tokens,
    };
    server::start(
        api::users_api_mod::api_description::<handlers::UsersImpl>(),
        context,
        config,
        log,
    )
}

/// Creates an admin account (the `server admin create` command): the same checks as
/// `create_user`, then role `admin`.
pub async fn create_admin(
    config: &Config,
    username: &str,
    email: &str,
    password: String,
) -> anyhow::Result<taproom_client::users::types::User> {
    let spec = Spec::parse(NAME, api::SPEC_YAML)?;
    crate::runtime::extract::register_spec(&spec.value)?;
    let input = serde_json::json!({"username": username, "email": email, "password": password});
    let errors = crate::runtime::extract::validate_body("create_user", &input);
    if !errors.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.pointer.trim_start_matches('/'), e.message))
            .collect();
        anyhow::bail!("{}", lines.join("; "));
    }
    let db = connect(config).await?;
    let password_hash = tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let new = store::NewUser {
        username: username.to_string(),
        email: email.to_string(),
        password_hash,
        first_name: None,
        last_name: None,
    };
    store::create_with_role(&db, new, taproom_client::users::types::Role::Admin)
        .await
        .map_err(|e| match e {
            crate::runtime::db::StoreError::Taken(field) => {
                anyhow::anyhow!("that {field} is already taken")
            }
            other => anyhow::anyhow!("{other:?}"),
        })
}

/// The OpenAPI document dropshot derives from the trait, for `cargo xtask check`.
pub fn served_openapi() -> anyhow::Result<serde_json::Value> {
    server::served_openapi(api::users_api_mod::stub_api_description(), NAME)
}
