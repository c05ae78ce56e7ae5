//! The booking story, in one place: what happens to a booking after the client confirmed it,
//! whichever side the change comes from, and what every change causes elsewhere.
//!
//! - [`changes`]: applying a change the schedule or the CRM reports (cancelled, moved, visited,
//!   no-show, a record we did not make) to our booking, and the jobs that change causes.
//! - [`effects`]: those jobs as typed operations and payloads, written into the outbox in the
//!   transaction of the change.
//! - [`schedule_jobs`] and [`crm_jobs`]: the queue handlers that carry the jobs out in the
//!   schedule (a booking it could not take at once) and in the CRM (contact, lead, stage, notes).
//! - [`inbox`]: the handlers of the webhooks that report a change (YClients records, amoCRM and
//!   Bitrix24 stages); each vendor's folder parses its own payload.
//! - [`schedule_reconcile`] and [`watch`]: re-reading the schedule for what no webhook told us
//!   (every schedule on an interval; Dikidi through its own poller).
//! - [`crm_reconcile`]: re-reading the CRM for stages a manager moved while webhooks were lost.
//! - [`reminders`]: the client's reminder before a visit, with its confirm and cancel buttons.
//! - [`report`]: one booking as every system holds it, for the console and `zapis bookings`.
//!
//! The schedule and CRM seams (`booking`, `crm`) sit below this module: the story calls them,
//! and their webhook parsers hand it what changed, so neither needs to know the story. The
//! queue handlers of 1C and of the messengers read their jobs' payloads from [`effects`], so
//! they sit above it.

pub mod changes;
pub mod crm_jobs;
pub mod crm_reconcile;
pub mod effects;
pub mod inbox;
pub mod reminders;
pub mod report;
pub mod schedule_jobs;
pub mod schedule_reconcile;
pub mod watch;
