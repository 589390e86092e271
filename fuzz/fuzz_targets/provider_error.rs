//! `scrub_provider_error`: a provider's error answer never reaches the client in its own words.
//! The properties checked are documented on `cordon::fuzz_logic::provider_error`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cordon::fuzz_logic::provider_error(data));
