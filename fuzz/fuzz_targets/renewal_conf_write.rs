#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| certfleet_fuzz::renewal_conf_write(data));
