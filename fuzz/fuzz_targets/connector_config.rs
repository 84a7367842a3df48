#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_connector::fuzzing::connector_config(data));
