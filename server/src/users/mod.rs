//! The users service: accounts, passwords, tokens and roles (port 5001).

pub mod api;
mod handlers;
mod kek;
mod login;
mod passwords;
mod sessions;
mod store;
mod throttle;
mod tokens;

use crate::runtime::migrations::{self, Embedded};
use crate::runtime::config::Config;
use crate::runtime::registry::{PeerUrls, ServiceDef};
use crate::runtime::{retention, server, Service, Spec};
use dropshot::HttpServer;

pub const NAME: &str = "users";

pub static MIGRATOR: Embedded = Embedded::new(|| migrations::migrator(migrations::users::FILES));

pub static SERVICE: ServiceDef = ServiceDef {
    name: NAME,
    about: "accounts, login, tokens and roles; publishes the keys other services verify tokens with",
    port: 5001,
    spec: api::SPEC_YAML,
    migrator: &MIGRATOR,
    peers: &[],
    start: crate::start_fn!(NAME, start),
    served_openapi: api::served_openapi,
};

/// The users service's own state.
pub struct Users {
    /// The keys tokens are signed with.
    pub tokens: tokens::Tokens,
    /// How many failed logins lock an address out of an account, and the account.
    pub throttle: throttle::Limits,
    _pruner: Option<retention::Pruner>,
}

/// What users forgets, and when: idle login-failure counters and expired refresh tokens
/// (a rotated token must be kept until it expires, so that its reuse is recognised).
pub fn retention_rules() -> Vec<retention::Rule> {
    vec![
        retention::Rule {
            what: "login_throttle",
            sql: "DELETE FROM login_throttle WHERE key IN \
                  (SELECT key FROM login_throttle WHERE updated_at < $1 LIMIT $2)",
            keep: throttle::FORGET_AFTER,
        },
        retention::Rule {
            what: "refresh_tokens",
            sql: "DELETE FROM refresh_tokens WHERE token_hash IN \
                  (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
            keep: std::time::Duration::ZERO,
        },
    ]
}

/// The users service's context.
pub type UsersContext = Service<Users>;

/// Starts the service (it calls no other; `_peers` is empty).
pub async fn start(
    config: &Config,
    _peers: &PeerUrls,
    log: &slog::Logger,
) -> anyhow::Result<HttpServer<UsersContext>> {
    passwords::configure(config);
    let kek = kek::Kek::from_config(config)?;
    let db = server::connect(config, NAME, &MIGRATOR).await?;
    let tokens = tokens::Tokens::load(
        &db,
        kek,
        config.token_ttl_secs,
        config.refresh_token_ttl_secs,
    )
    .await?;
    // Tokens are verified with the service's own keys, and callers against the accounts
    // as stored.
    let mut context = Service {
        spec: Spec::parse(NAME, api::SPEC_YAML)?,
        accounts: Some(std::sync::Arc::new(StoredAccounts(db.clone()))),
        db,
        keyring: tokens.keyring.clone(),
        events_token: config.events_token.clone(),
        clients: crate::runtime::clients::Clients::new(config),
        tracer: crate::runtime::trace::Tracer::from_config(config, NAME)?,
        state: Users {
            tokens,
            throttle: throttle::Limits::from(config),
            _pruner: None,
        },
    };
    context.state._pruner = Some(context.prune(config, retention_rules(), log));
    server::start(api::api::<handlers::UsersImpl>(), context, config, log)
}

/// The accounts in this service's database: its own operations act for callers as
/// they are now (a token outlives a role change or a deletion until it expires).
struct StoredAccounts(crate::runtime::Db);

#[async_trait::async_trait]
impl crate::runtime::security::Accounts for StoredAccounts {
    async fn current(
        &self,
        caller: &crate::runtime::auth::Caller,
    ) -> anyhow::Result<Option<crate::runtime::auth::Caller>> {
        let stored = store::role(&self.0, caller.user_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(stored.map(|role| crate::runtime::auth::Caller {
            user_id: caller.user_id,
            admin: role == taproom_client::users::types::Role::Admin,
        }))
    }
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
    let input = serde_json::json!({"username": username, "email": email, "password": password});
    let errors = spec.validators.validate_body("create_user", &input);
    if !errors.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.pointer.trim_start_matches('/'), e.message))
            .collect();
        anyhow::bail!("{}", lines.join("; "));
    }
    let db = server::connect(config, NAME, &MIGRATOR).await?;
    let password_hash = passwords::hash(password).await?;
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

pub use tokens::{Rotation, RETIRED_KEY_GRACE};

/// Makes a new signing key (the `server admin rotate-keys` command). The old one stays
/// published until the tokens it signed have expired (TOKEN_TTL_SECS), unless `revoke`:
/// then every other key is deleted at once and the tokens they signed stop verifying.
pub async fn rotate_keys(config: &Config, revoke: bool) -> anyhow::Result<Rotation> {
    let kek = kek::Kek::from_config(config)?;
    let db = server::connect(config, NAME, &MIGRATOR).await?;
    tokens::rotate(&db, &kek, config.token_ttl_secs, revoke).await
}

/// The signing key opened: (kid, PKCS#8 DER). For tools and tests that must sign what the
/// API never would (expired tokens, say); it needs the key-encryption key, as the
/// service does.
pub async fn signing_key(config: &Config) -> anyhow::Result<(String, Vec<u8>)> {
    let kek = kek::Kek::from_config(config)?;
    let db = server::connect(config, NAME, &MIGRATOR).await?;
    tokens::signing_key(&db, &kek).await
}
