//! The SSE framer feeding every relay, at fuzzer-chosen chunk boundaries.
//! The properties checked are documented on `cordon::fuzz_logic::sse`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cordon::fuzz_logic::sse(data));
