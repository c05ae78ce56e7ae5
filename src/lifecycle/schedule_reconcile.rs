//! The reconciliation poll, generic over [`BookingSystem`]: upcoming bookings linked to us are
//! re-read from the schedule and compared with our store and with the version we last saw
//! there. A difference the schedule made becomes a change through [`ChangeApplier`], exactly as
//! a webhook would; the safety net for a lost webhook and the only path for a schedule that
//! sends none.
//!
//! Echoes: our own writes reach the store and the schedule together, so re-reading them finds
//! nothing to do. When the schedule still shows the version we last saw but our store moved on,
//! the change is ours and on its way (a queued job), and the poll leaves it alone.

use crate::domain::BusinessId;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::changes::{Applied, ChangeApplier, Origin, ScheduleChange};
use crate::booking::{BookingSystem, Record, RecordStatus, record_key};
use crate::domain::{Booking, BookingStatus};
use crate::store::{Store, StoreError, version_of};

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Bookings compared.
    pub checked: usize,
    /// Changes found and applied.
    pub applied: usize,
    /// Calls made to the schedule.
    pub calls: usize,
    /// Reads that failed; the rest of the round is left for the next poll when the schedule is
    /// down.
    pub failed: usize,
}

/// What the schedule's copy of a booking means for ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Both agree.
    Same,
    /// The schedule still holds what we last saw there; the difference is our own change on its
    /// way to it.
    Ours,
    /// The schedule changed the booking.
    Theirs(ScheduleChange),
}

/// The status a schedule record stands for, as our store spells it.
pub fn record_status(status: RecordStatus) -> BookingStatus {
    match status {
        RecordStatus::Active => BookingStatus::Booked,
        RecordStatus::Cancelled => BookingStatus::CancelledByBusiness,
        RecordStatus::Visited => BookingStatus::Visited,
        RecordStatus::NoShow => BookingStatus::NoShow,
    }
}

/// The version of a schedule record, comparable with what the store keeps.
pub fn record_version(record: &Record, ours: &Booking) -> String {
    // Some schedules leave the master out of a record they did not move to another master.
    let master = if record.master_id.is_empty() {
        ours.master_id.as_str()
    } else {
        record.master_id.as_str()
    };
    version_of(record_status(record.status).as_str(), record.start, master)
}

/// Compares our booking with the schedule's record, given the version last seen there.
pub fn decide(ours: &Booking, known: Option<&str>, theirs: Option<&Record>) -> Decision {
    let Some(theirs) = theirs else {
        // The schedule no longer has the record: deleted there.
        return Decision::Theirs(ScheduleChange::Cancelled);
    };
    let theirs_version = record_version(theirs, ours);
    let ours_version = version_of(
        if ours.status.is_active() {
            BookingStatus::Booked.as_str()
        } else {
            ours.status.as_str()
        },
        ours.start,
        &ours.master_id,
    );
    if theirs_version == ours_version {
        return Decision::Same;
    }
    if known == Some(theirs_version.as_str()) {
        return Decision::Ours;
    }
    match theirs.status {
        RecordStatus::Cancelled => Decision::Theirs(ScheduleChange::Cancelled),
        RecordStatus::Visited => Decision::Theirs(ScheduleChange::Visited),
        RecordStatus::NoShow => Decision::Theirs(ScheduleChange::NoShow),
        RecordStatus::Active => Decision::Theirs(ScheduleChange::Moved {
            start: theirs.start,
            master_id: (!theirs.master_id.is_empty()).then(|| theirs.master_id.clone()),
        }),
    }
}

pub struct Reconciler {
    pub booking: Arc<dyn BookingSystem>,
    pub store: Store,
    pub applier: ChangeApplier,
    pub business_id: BusinessId,
    /// How far ahead bookings are re-read.
    pub ahead: Duration,
}

impl Reconciler {
    /// Visits that began within this window are still read: the schedule marks attendance
    /// after the start.
    const BEHIND: Duration = Duration::hours(24);

    pub async fn poll(&self, now: DateTime<Utc>) -> Result<PollReport, StoreError> {
        let mut report = PollReport::default();
        let bookings = self
            .store
            .active_bookings_between(&self.business_id, now - Self::BEHIND, now + self.ahead)
            .await?;
        let system = self.booking.system();
        let from = now - Self::BEHIND;
        let to = now + self.ahead;
        // One listing where the schedule offers it; a record missing from it is read alone.
        let listed: Option<std::collections::HashMap<String, Record>> = if bookings
            .iter()
            .any(|b| b.external_id.is_some())
        {
            match self.booking.records_between(from, to).await {
                Ok(Some(listing)) => {
                    report.calls += listing.calls;
                    Some(
                        listing
                            .records
                            .into_iter()
                            .map(|r| (record_key(&r.external_id).to_string(), r))
                            .collect(),
                    )
                }
                Ok(None) => None,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(error = %e, "reconcile: cannot list the schedule; next round");
                    return Ok(report);
                }
            }
        } else {
            None
        };
        let known_versions = self
            .store
            .known_versions(&self.business_id, system, from, to)
            .await?;
        for booking in bookings {
            let Some(external) = booking.external_id.clone() else {
                // Not in the schedule yet: a queued booking, completed by its job.
                continue;
            };
            report.checked += 1;
            let in_list = listed
                .as_ref()
                .and_then(|l| l.get(record_key(&external)).cloned());
            let read = match in_list {
                Some(r) => Ok(Some(r)),
                None => {
                    report.calls += 1;
                    self.booking.record(&external).await
                }
            };
            let theirs = match read {
                Ok(r) => r,
                Err(e) if e.is_transient() => {
                    report.failed += 1;
                    tracing::warn!(error = %e, "reconcile: the schedule is unavailable; next round");
                    break;
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(booking = %booking.id, error = %e, "reconcile: cannot read the record");
                    continue;
                }
            };
            let known = known_versions.get(booking.id.as_str()).map(String::as_str);
            let decision = decide(&booking, known, theirs.as_ref());
            match decision {
                Decision::Same => {
                    if let Some(record) = &theirs {
                        let version = record_version(record, &booking);
                        if known != Some(version.as_str()) {
                            let status = record_status(record.status);
                            self.store
                                .put_known(
                                    &self.business_id,
                                    &booking.id,
                                    system,
                                    &version,
                                    status.as_str(),
                                    now,
                                )
                                .await?;
                        }
                    }
                }
                Decision::Ours => {}
                Decision::Theirs(change) => {
                    match self
                        .applier
                        .apply_from(&self.store, &booking, &change, Origin::Reconcile, now)
                        .await?
                    {
                        Applied::Changed => {
                            report.applied += 1;
                            tracing::info!(booking = %booking.id, ?change, "reconcile: a change the schedule made was missed; applied");
                        }
                        Applied::Unchanged => {}
                        // Our own write of it is under way: the next round sees it settled.
                        Applied::InFlight => {
                            tracing::debug!(booking = %booking.id, "reconcile: being changed by us; next round");
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::domain::{Channel, ChatRef, Money, Source};
    use crate::normalize::Phone;
    use chrono::TimeZone;

    fn ours() -> Booking {
        Booking {
            id: crate::domain::bk("bk"),
            business_id: bid("b"),
            client_phone: Phone::parse("+79123456789").unwrap(),
            client_name: "Анна".into(),
            client_email: None,
            service_id: "s".into(),
            service_name: "Стрижка".into(),
            master_id: "m1".into(),
            master_name: "Ольга".into(),
            start: Utc.with_ymd_and_hms(2030, 1, 10, 9, 0, 0).unwrap(),
            duration_min: 60,
            price: Money::from_rubles(1000),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: Some(ChatRef::new(Channel::Telegram, "1")),
            external_id: Some(crate::domain::rec("r1")),
            created_at: Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap(),
        }
    }

    fn record(start_h: u32, master: &str, status: RecordStatus) -> Record {
        Record {
            external_id: crate::domain::rec("r1"),
            service_id: "s".into(),
            master_id: master.into(),
            start: Utc.with_ymd_and_hms(2030, 1, 10, start_h, 0, 0).unwrap(),
            duration_min: 60,
            status,
        }
    }

    #[test]
    fn equal_copies_are_the_same_even_without_a_master() {
        assert_eq!(
            decide(&ours(), None, Some(&record(9, "m1", RecordStatus::Active))),
            Decision::Same
        );
        assert_eq!(
            decide(&ours(), None, Some(&record(9, "", RecordStatus::Active))),
            Decision::Same
        );
    }

    #[test]
    fn the_schedule_wins_on_time_and_master() {
        let theirs = record(11, "m2", RecordStatus::Active);
        let want = Decision::Theirs(ScheduleChange::Moved {
            start: theirs.start,
            master_id: Some("m2".into()),
        });
        assert_eq!(decide(&ours(), None, Some(&theirs)), want);
        // Even when we last saw something else there.
        let old = version_of("booked", ours().start, "m1");
        assert_eq!(decide(&ours(), Some(&old), Some(&theirs)), want);
    }

    #[test]
    fn a_difference_the_schedule_already_had_is_our_change_on_its_way() {
        let theirs = record(11, "m1", RecordStatus::Active);
        let seen = record_version(&theirs, &ours());
        assert_eq!(decide(&ours(), Some(&seen), Some(&theirs)), Decision::Ours);
    }

    #[test]
    fn deletion_attendance_and_cancellation_become_changes() {
        assert_eq!(
            decide(&ours(), None, None),
            Decision::Theirs(ScheduleChange::Cancelled)
        );
        assert_eq!(
            decide(
                &ours(),
                None,
                Some(&record(9, "m1", RecordStatus::Cancelled))
            ),
            Decision::Theirs(ScheduleChange::Cancelled)
        );
        assert_eq!(
            decide(&ours(), None, Some(&record(9, "m1", RecordStatus::Visited))),
            Decision::Theirs(ScheduleChange::Visited)
        );
        assert_eq!(
            decide(&ours(), None, Some(&record(9, "m1", RecordStatus::NoShow))),
            Decision::Theirs(ScheduleChange::NoShow)
        );
    }
}
