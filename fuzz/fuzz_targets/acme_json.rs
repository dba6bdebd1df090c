#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| certfleet_fuzz::acme_json(data));
