#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| certfleet_fuzz::account_json(data));
