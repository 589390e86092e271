//! OpenAI <-> Anthropic translation of requests and responses, both ways.
//! The properties checked are documented on `cordon::fuzz_logic::translate`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cordon::fuzz_logic::translate(data));
