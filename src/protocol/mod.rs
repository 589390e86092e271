//! Wire types of the client and provider protocols. Pure: no I/O.

pub mod openai;
