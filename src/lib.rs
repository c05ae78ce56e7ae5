//! zapis: a booking bot and integration hub for salons, clinics and schools.

pub mod accounting;
pub mod app;
pub mod booking;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conversation;
pub mod crm;
pub mod dialog;
pub mod domain;
pub mod effects;
pub mod fuzz;
pub mod http;
pub mod i18n;
pub mod import;
pub mod messenger;
pub mod normalize;
pub mod probe;
pub mod reminders;
pub mod report;
pub mod school;
pub mod secrets;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod watch;
