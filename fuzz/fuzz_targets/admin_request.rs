//! The admin API's routing, query-string and JSON-body parsing.
//! The properties checked are documented on `cordon::fuzz_logic::admin_request`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cordon::fuzz_logic::admin_request(data));
