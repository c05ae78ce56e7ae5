//! The integration tests, in one binary so the fakes (`tests/support`) and the crate are
//! compiled and linked once. Each module is one story or one vendor: the real service objects
//! or the real `zapis` executable (`CARGO_BIN_EXE_zapis`) against fakes over real HTTP.

#[path = "../support/mod.rs"]
mod support;

mod amocrm;
mod architecture;
mod bitrix24;
mod console_browser;
mod crm_conformance;
mod crm_e2e;
mod crm_faults_e2e;
mod demo;
mod dikidi;
mod dikidi_e2e;
mod fuzz_smoke;
mod http_hostile;
mod import;
mod max_e2e;
mod max_fake;
mod onec_commerceml;
mod onec_odata;
mod scenarios;
mod school;
mod school_telegram_e2e;
mod support_e2e;
mod sync_chaos;
mod sync_soak;
mod telegram_adapter;
mod telegram_e2e;
mod telegram_fake;
mod tenancy;
mod two_way_e2e;
mod unfinished_e2e;
mod words_e2e;
mod yclients;
mod yclients_e2e;
