//! cordon: an AI gateway that sends each request only to a provider whose data
//! terms satisfy the sending tenant's policy.

#![forbid(unsafe_code)]

// Modules the binary, the integration tests, the benchmarks and the fuzz
// targets reach are `pub`; the rest are `pub(crate)`, so what nothing uses
// shows up as dead code.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
// BYOK sealing; `pub` until the admin API that stores credentials uses it.
pub mod credentials;
pub(crate) mod demo;
pub(crate) mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzz_logic;
pub(crate) mod health;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod policy;
pub mod protocol;
pub(crate) mod secret;
pub(crate) mod server;
pub mod store;
pub mod stream;
pub(crate) mod upstream;
pub mod usage;
