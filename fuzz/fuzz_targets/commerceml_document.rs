#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zapis::fuzz::commerceml_document(data));
