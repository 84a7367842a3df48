#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_connect_protocol::fuzzing::poll_body(data));
