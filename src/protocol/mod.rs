//! Wire types of the client and provider protocols. Pure: no I/O.

pub mod anthropic;
pub mod json;
pub mod openai;
pub mod translate;
