//! OpenAI routing fields (`Request::parse`, `forward_body`, `with_model`) and JSON depth (`deeper_than`).
//! The properties checked are documented on `cordon::fuzz_logic::routing`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cordon::fuzz_logic::routing(data));
