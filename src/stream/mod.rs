//! Relaying provider responses to the client: SSE re-framing, usage
//! extraction, and the body wrapper that records usage exactly once.

pub mod body;
pub mod sse;
pub mod translate;
