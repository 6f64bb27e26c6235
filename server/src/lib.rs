//! Taproom's services, each a dropshot server implementing its generated API trait.

pub mod runtime;
pub mod users;

/// Every service, in port order.
pub const SERVICES: &[&str] = &[users::NAME];
