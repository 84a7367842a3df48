#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_relay::fuzzing::client_ip(data));
