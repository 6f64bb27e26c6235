//! Taproom's services, each a dropshot server implementing its generated API trait.

// `Problem` is every handler's error type (dropshot needs the type itself, not a box);
// errors are the cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod gateway;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod mock;
pub mod runtime;
pub mod webapp;

/// Declares the service modules and lists their definitions, in start order (a service
/// after the services it calls). Adding a service: its folders, and one name here.
macro_rules! services {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every service, in start order.
        pub static SERVICES: &[&runtime::registry::ServiceDef] = &[$(&$name::SERVICE),*];
    };
}

services!(users, beers, promotions, orders, tasks, scores, exercises);
