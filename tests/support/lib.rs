//! Fake vendor servers on free local ports, each reproducing its vendor's documented contract
//! (../shared/contracts/, ../shared/reference/), including what a vendor does not do; plus a
//! chaos proxy, a CommerceML schema check and scripted chat scenarios.
//!
//! A crate of its own so the test binaries and the benchmarks compile it once; it depends on
//! nothing of zapis's (settings pointing at a fake are built in tests/support/mod.rs).

pub mod chaos_proxy;
pub mod chat;
pub mod cml_xsd;
pub mod fake_alfacrm;
pub mod fake_amocrm;
pub mod fake_bitrix24;
pub mod fake_dikidi;
pub mod fake_getcourse;
pub mod fake_max;
pub mod fake_onec;
pub mod fake_target;
pub mod fake_telegram;
pub mod fake_yclients;
pub mod scenario;
