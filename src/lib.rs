//! zapis: a booking bot and integration hub for salons, clinics and schools.

pub mod booking;
pub mod clock;
pub mod config;
pub mod conversation;
pub mod dialog;
pub mod domain;
pub mod i18n;
pub mod normalize;
pub mod store;
pub mod sync;
