//! The in-process integration tests: the real service objects against the fakes over real
//! HTTP, one module per story or vendor. A few run one `zapis` command (`check`, `import`) as
//! a user would, and school.rs starts its forms-only school once with `zapis run`, beside the
//! school stories whose settings it shares. The rest of what spawns the service is tests/e2e.

#[path = "../support/mod.rs"]
mod support;

mod amocrm;
mod architecture;
mod bitrix24;
mod crm_conformance;
mod dikidi;
mod fuzz_smoke;
mod import;
mod max_fake;
mod onec_commerceml;
mod onec_odata;
mod scenarios;
mod school;
mod sync_soak;
mod telegram_adapter;
mod telegram_fake;
mod tenancy;
mod yclients;
