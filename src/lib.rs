//! cordon: an AI gateway that sends each request only to a provider whose data
//! terms satisfy the sending tenant's policy.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzz_logic;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod secret;
pub mod server;
pub mod store;
pub mod stream;
pub mod upstream;
pub mod usage;
