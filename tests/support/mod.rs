//! Fakes of external systems shared by the integration tests and benches.
#![allow(dead_code)]

pub mod fake_yclients;
