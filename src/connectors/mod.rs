//! The plumbing every vendor connector shares, so that each vendor folder holds only what is
//! its own (paths, wire types, mapping, quirks):
//! - [`http`]: one client builder (timeouts, user agent) and transport failures without URLs,
//!   which may carry tokens;
//! - [`failure`]: one [`Failure`] type, one status classifier with per-vendor quirk hooks,
//!   one `Retry-After` parser, and one conversion into the sync engine's retry decision;
//! - [`pacing`]: one rate limiter per vendor account, shared by every client of it;
//! - [`calls`]: requests counted per endpoint.

pub mod calls;
pub mod failure;
pub mod http;
pub mod pacing;

pub use failure::{Failure, Kind, Quirks};
