//! Taproom's services, each a dropshot server implementing its generated API trait.

// `Problem` is every handler's error type (dropshot needs the type itself, not a box);
// errors are the cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod beers;
pub mod gateway;
pub mod orders;
pub mod promotions;
pub mod runtime;
pub mod tasks;
pub mod users;

/// Every service, in port order.
pub const SERVICES: &[&str] = &[
    users::NAME,
    beers::NAME,
    orders::NAME,
    tasks::NAME,
    promotions::NAME,
];
