//! Wire types of the client and provider protocols. Pure: no I/O.

pub mod anthropic;
pub mod openai;
pub mod translate;
