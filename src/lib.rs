//! cordon: an AI gateway that sends each request only to a provider whose data
//! terms satisfy the sending tenant's policy.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod policy;
pub mod secret;
