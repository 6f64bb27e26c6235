//! The beers service: the catalogue (port 5002). Anyone may read it; admins change it.
//! Reads carry strong ETags; changes honour `If-Match`.

pub mod api;
mod handlers;
mod store;

pub const NAME: &str = "beers";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/beers");

crate::runtime::keyring_service!(BeersContext, handlers::BeersImpl, beers_api_mod);
