#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zapis::fuzz::bitrix24_event(data));
