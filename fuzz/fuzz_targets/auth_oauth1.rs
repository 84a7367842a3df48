#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_relay::fuzzing::auth_oauth1(data));
