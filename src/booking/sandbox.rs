//! The built-in salon used by `zapis demo` and the tests: real schedule rules (working hours,
//! days off, lunch breaks, the business time zone) and records kept in the store, so it behaves
//! like a booking system without any network.

use crate::domain::BusinessId;
use crate::domain::{RecordId, System};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use tokio::sync::Mutex;

use super::{BookRequest, BookingError, BookingSystem, Record, RecordStatus};
use crate::clock::Clock;
use crate::domain::{Master, Money, Service, Slot};
use crate::store::sandbox::NewSandboxRecord;
use crate::store::{Store, StoreError};

/// Slots start on this grid, in minutes.
const SLOT_STEP_MIN: i64 = 30;
/// A client cannot book closer to now than this.
const MIN_LEAD: Duration = Duration::minutes(60);

struct MasterPlan {
    master: Master,
    day_off: Weekday,
    opens: (u32, u32),
    closes: (u32, u32),
    lunch: ((u32, u32), (u32, u32)),
    categories: &'static [&'static str],
}

pub struct Sandbox {
    store: Store,
    business_id: BusinessId,
    tz: Tz,
    clock: Arc<dyn Clock>,
    services: Vec<Service>,
    masters: Vec<MasterPlan>,
    /// Serialises bookings in this process; the unique index and, on PostgreSQL, an advisory
    /// lock cover other processes.
    write_lock: Mutex<()>,
}

const HAIR: &str = "Стрижки и укладки";
const NAILS: &str = "Ногтевой сервис";

fn service(id: &str, name: &str, category: &str, minutes: u32, from: i64, to: i64) -> Service {
    Service {
        id: id.into(),
        name: name.into(),
        category: category.into(),
        duration_min: minutes,
        price_min: Money::from_rubles(from),
        price_max: Money::from_rubles(to),
        description: None,
    }
}

impl Sandbox {
    pub fn new(store: Store, business_id: &BusinessId, tz: Tz, clock: Arc<dyn Clock>) -> Sandbox {
        let services = vec![
            service("s1", "Женская стрижка", HAIR, 60, 2000, 2000),
            service("s2", "Мужская стрижка", HAIR, 45, 1200, 1200),
            service("s3", "Детская стрижка", HAIR, 30, 800, 800),
            service("s4", "Укладка", HAIR, 45, 1500, 1500),
            service("s5", "Маникюр", NAILS, 60, 1500, 1500),
            service("s6", "Педикюр", NAILS, 90, 2200, 2200),
            service("s7", "Покрытие гель-лаком", NAILS, 90, 1800, 2500),
        ];
        let master = |id: &str, name: &str, spec: &str| Master {
            id: id.into(),
            name: name.into(),
            specialization: spec.into(),
        };
        let masters = vec![
            MasterPlan {
                master: master("m1", "Ольга Смирнова", "Стилист-парикмахер"),
                day_off: Weekday::Mon,
                opens: (10, 0),
                closes: (19, 0),
                lunch: ((14, 0), (15, 0)),
                categories: &[HAIR],
            },
            MasterPlan {
                master: master("m2", "Ирина Ковалёва", "Мастер маникюра"),
                day_off: Weekday::Sun,
                opens: (9, 0),
                closes: (18, 0),
                lunch: ((13, 0), (14, 0)),
                categories: &[NAILS],
            },
            MasterPlan {
                master: master("m3", "Анна Петрова", "Универсал"),
                day_off: Weekday::Wed,
                opens: (12, 0),
                closes: (21, 0),
                lunch: ((16, 0), (16, 30)),
                categories: &[HAIR, NAILS],
            },
        ];
        Sandbox {
            store,
            business_id: business_id.clone(),
            tz,
            clock,
            services,
            masters,
            write_lock: Mutex::new(()),
        }
    }

    fn service(&self, id: &str) -> Result<&Service, BookingError> {
        self.services
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| BookingError::NotFound(format!("service {id}")))
    }

    fn plans_for(&self, service: &Service, master_id: Option<&str>) -> Vec<&MasterPlan> {
        self.masters
            .iter()
            .filter(|p| p.categories.contains(&service.category.as_str()))
            .filter(|p| master_id.is_none_or(|m| p.master.id == m))
            .collect()
    }

    fn local(&self, day: NaiveDate, (h, m): (u32, u32)) -> Option<DateTime<Utc>> {
        let time = NaiveTime::from_hms_opt(h, m, 0)?;
        self.tz
            .from_local_datetime(&day.and_time(time))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Candidate starts for one master on one day, before looking at existing records.
    fn grid(
        &self,
        plan: &MasterPlan,
        day: NaiveDate,
        minutes: u32,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if day.weekday() == plan.day_off {
            return Vec::new();
        }
        let (Some(open), Some(close), Some(lunch_from), Some(lunch_to)) = (
            self.local(day, plan.opens),
            self.local(day, plan.closes),
            self.local(day, plan.lunch.0),
            self.local(day, plan.lunch.1),
        ) else {
            return Vec::new();
        };
        let length = Duration::minutes(i64::from(minutes));
        let earliest = self.clock.now() + MIN_LEAD;
        let mut out = Vec::new();
        let mut start = open;
        while start + length <= close {
            let end = start + length;
            let hits_lunch = start < lunch_to && end > lunch_from;
            if !hits_lunch && start >= earliest {
                out.push((start, end));
            }
            start += Duration::minutes(SLOT_STEP_MIN);
        }
        out
    }

    async fn busy(
        &self,
        master_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64)>, BookingError> {
        self.store
            .sandbox_busy(
                &self.business_id,
                master_id,
                from.timestamp_millis(),
                to.timestamp_millis(),
            )
            .await
            .map_err(store_err)
    }

    async fn free_for(
        &self,
        plan: &MasterPlan,
        service: &Service,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        let grid = self.grid(plan, day, service.duration_min);
        let (Some(first), Some(last)) = (grid.first(), grid.last()) else {
            return Ok(Vec::new());
        };
        let busy = self.busy(&plan.master.id, first.0, last.1).await?;
        Ok(grid
            .into_iter()
            .filter(|(s, e)| {
                let (s, e) = (s.timestamp_millis(), e.timestamp_millis());
                busy.iter().all(|(bs, be)| e <= *bs || s >= *be)
            })
            .map(|(start, _)| Slot {
                master_id: plan.master.id.clone(),
                start,
                duration_min: service.duration_min,
            })
            .collect())
    }

    fn fits_schedule(&self, plan: &MasterPlan, start: DateTime<Utc>, minutes: u32) -> bool {
        let day = start.with_timezone(&self.tz).date_naive();
        self.grid(plan, day, minutes)
            .iter()
            .any(|(s, _)| *s == start)
    }

    async fn insert_record(
        &self,
        request: &BookRequest,
        end: DateTime<Utc>,
    ) -> Result<String, BookingError> {
        let id = format!("sb-{}", uuid::Uuid::new_v4().simple());
        let record = NewSandboxRecord {
            id: &id,
            business_id: &self.business_id,
            master_id: &request.master_id,
            service_id: &request.service_id,
            start_at: request.start.timestamp_millis(),
            end_at: end.timestamp_millis(),
            client_phone: request.client_phone.as_str(),
            client_name: &request.client_name,
            comment: &request.comment,
            booking_id: &request.booking_id,
            created_at: self.clock.now().timestamp_millis(),
        };
        if !self
            .store
            .insert_sandbox_record(&record)
            .await
            .map_err(store_err)?
        {
            return Err(BookingError::SlotTaken);
        }
        Ok(id)
    }
}

fn store_err(e: impl Into<StoreError>) -> BookingError {
    BookingError::unavailable(e.into().to_string())
}

#[async_trait]
impl BookingSystem for Sandbox {
    fn system(&self) -> System {
        System::Sandbox
    }

    async fn services(&self) -> Result<Vec<Service>, BookingError> {
        Ok(self.services.clone())
    }

    async fn masters(&self, service_id: &str) -> Result<Vec<Master>, BookingError> {
        let service = self.service(service_id)?;
        Ok(self
            .plans_for(service, None)
            .into_iter()
            .map(|p| p.master.clone())
            .collect())
    }

    async fn free_days(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, BookingError> {
        let mut days = Vec::new();
        let mut day = from;
        while day <= to {
            if !self
                .free_slots(service_id, master_id, day)
                .await?
                .is_empty()
            {
                days.push(day);
            }
            day = day
                .succ_opt()
                .ok_or_else(|| BookingError::rejected("date overflow"))?;
        }
        Ok(days)
    }

    async fn free_slots(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        let service = self.service(service_id)?;
        let mut slots = Vec::new();
        for plan in self.plans_for(service, master_id) {
            slots.extend(self.free_for(plan, service, day).await?);
        }
        // With "any master", one button per time: the first free master takes it.
        Slot::sort(&mut slots);
        if master_id.is_none() {
            slots.dedup_by(|a, b| a.start == b.start);
        }
        Ok(slots)
    }

    async fn book(&self, request: &BookRequest) -> Result<Record, BookingError> {
        let service = self.service(&request.service_id)?;
        let plan = self
            .plans_for(service, Some(&request.master_id))
            .into_iter()
            .next()
            .ok_or_else(|| {
                BookingError::rejected(format!(
                    "master {} does not render this service",
                    request.master_id
                ))
            })?;
        if !self.fits_schedule(plan, request.start, service.duration_min) {
            return Err(BookingError::SlotTaken);
        }
        let end = request.start + Duration::minutes(i64::from(service.duration_min));
        let _guard = self.write_lock.lock().await;
        let id = self.insert_record(request, end).await?;
        Ok(Record {
            external_id: RecordId::parse(&id)?,
            service_id: service.id.clone(),
            master_id: request.master_id.clone(),
            start: request.start,
            duration_min: service.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn cancel(&self, external_id: &RecordId) -> Result<(), BookingError> {
        let done = self
            .store
            .cancel_sandbox_record(&self.business_id, external_id)
            .await
            .map_err(store_err)?;
        if !done {
            return Err(BookingError::NotFound(format!("record {external_id}")));
        }
        Ok(())
    }

    async fn reschedule(
        &self,
        external_id: &RecordId,
        slot: &Slot,
    ) -> Result<Record, BookingError> {
        let current = self
            .record(external_id)
            .await?
            .ok_or_else(|| BookingError::NotFound(format!("record {external_id}")))?;
        let service = self.service(&current.service_id)?.clone();
        let plan = self
            .plans_for(&service, Some(&slot.master_id))
            .into_iter()
            .next()
            .ok_or_else(|| {
                BookingError::rejected(format!(
                    "master {} does not render this service",
                    slot.master_id
                ))
            })?;
        if !self.fits_schedule(plan, slot.start, service.duration_min) {
            return Err(BookingError::SlotTaken);
        }
        let end = slot.start + Duration::minutes(i64::from(service.duration_min));
        let _guard = self.write_lock.lock().await;
        let moved = self
            .store
            .move_sandbox_record(
                &self.business_id,
                external_id,
                &slot.master_id,
                slot.start.timestamp_millis(),
                end.timestamp_millis(),
            )
            .await
            .map_err(store_err)?;
        if !moved {
            return Err(BookingError::SlotTaken);
        }
        Ok(Record {
            external_id: external_id.clone(),
            service_id: service.id,
            master_id: slot.master_id.clone(),
            start: slot.start,
            duration_min: service.duration_min,
            status: RecordStatus::Active,
        })
    }

    async fn find_record_for_booking(
        &self,
        request: &BookRequest,
    ) -> Result<Option<Record>, BookingError> {
        let booking_id = &request.booking_id;
        let id = self
            .store
            .sandbox_record_for_booking(&self.business_id, booking_id)
            .await
            .map_err(store_err)?;
        match id {
            Some(id) => self.record(&RecordId::parse(&id)?).await,
            None => Ok(None),
        }
    }

    async fn record(&self, external_id: &RecordId) -> Result<Option<Record>, BookingError> {
        let row = self
            .store
            .sandbox_record(&self.business_id, external_id)
            .await
            .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let (start, end) = (row.start_at, row.end_at);
        Ok(Some(Record {
            external_id: RecordId::parse(&row.id)?,
            service_id: row.service_id,
            master_id: row.master_id,
            start: Utc
                .timestamp_millis_opt(start)
                .single()
                .ok_or_else(|| BookingError::unavailable(format!("corrupt record time {start}")))?,
            duration_min: u32::try_from((end - start) / 60_000).unwrap_or(0),
            status: if row.status == "active" {
                RecordStatus::Active
            } else {
                RecordStatus::Cancelled
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::domain::bid;
    use crate::normalize::Phone;
    use crate::store::testing;

    // Monday 2030-01-07, 06:00 Moscow time.
    fn monday_morning() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, 3, 0, 0).unwrap()
    }

    fn sandbox(store: Store, tz: Tz) -> Sandbox {
        Sandbox::new(
            store,
            &bid("b1"),
            tz,
            Arc::new(FakeClock::new(monday_morning())),
        )
    }

    fn request(master: &str, start: DateTime<Utc>) -> BookRequest {
        BookRequest {
            booking_id: crate::domain::BookingId::generate(),
            service_id: "s1".into(),
            master_id: master.into(),
            start,
            duration_min: 60,
            client_phone: Phone::parse("+79123456789").unwrap(),
            client_name: "Анна".into(),
            client_email: None,
            comment: String::new(),
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2030, 1, d).unwrap()
    }

    #[tokio::test]
    async fn catalogue_has_two_categories_and_masters_by_skill() {
        let sb = sandbox(testing::sqlite().await, chrono_tz::Europe::Moscow);
        let services = sb.services().await.unwrap();
        assert!(services.len() >= 5);
        let mut cats: Vec<_> = services.iter().map(|s| s.category.clone()).collect();
        cats.dedup();
        assert_eq!(cats.len(), 2);
        let hair: Vec<_> = sb
            .masters("s1")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(hair, ["m1", "m3"]);
        let nails: Vec<_> = sb
            .masters("s5")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(nails, ["m2", "m3"]);
        assert!(matches!(
            sb.masters("nope").await,
            Err(BookingError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn days_off_lunch_and_hours_shape_the_slots_in_local_time() {
        let sb = sandbox(testing::sqlite().await, chrono_tz::Europe::Moscow);
        // Olga rests on Mondays.
        assert!(
            sb.free_slots("s1", Some("m1"), day(7))
                .await
                .unwrap()
                .is_empty()
        );
        let tuesday = sb.free_slots("s1", Some("m1"), day(8)).await.unwrap();
        let local: Vec<String> = tuesday
            .iter()
            .map(|s| {
                s.start
                    .with_timezone(&chrono_tz::Europe::Moscow)
                    .format("%H:%M")
                    .to_string()
            })
            .collect();
        assert_eq!(local.first().map(String::as_str), Some("10:00"));
        assert_eq!(local.last().map(String::as_str), Some("18:00"));
        // A 60-minute visit can neither overlap lunch (14:00–15:00) nor start inside it.
        assert!(local.contains(&"13:00".to_string()));
        assert!(!local.contains(&"13:30".to_string()));
        assert!(!local.contains(&"14:00".to_string()));
        assert!(local.contains(&"15:00".to_string()));
        // Anna rests on Wednesdays; the free days of the week show it.
        let days = sb
            .free_days("s1", Some("m3"), day(7), day(13))
            .await
            .unwrap();
        assert!(!days.contains(&day(9)));
        assert!(days.contains(&day(8)));
    }

    #[tokio::test]
    async fn the_same_hours_follow_the_business_time_zone() {
        let sb = sandbox(testing::sqlite().await, chrono_tz::Asia::Yekaterinburg);
        let slots = sb.free_slots("s1", Some("m1"), day(8)).await.unwrap();
        // 10:00 in Yekaterinburg (UTC+5) is 05:00 UTC.
        assert_eq!(
            slots[0].start,
            Utc.with_ymd_and_hms(2030, 1, 8, 5, 0, 0).unwrap()
        );
    }

    #[tokio::test]
    async fn any_master_gives_one_slot_per_time() {
        let sb = sandbox(testing::sqlite().await, chrono_tz::Europe::Moscow);
        let any = sb.free_slots("s1", None, day(8)).await.unwrap();
        let mut starts: Vec<_> = any.iter().map(|s| s.start).collect();
        starts.dedup();
        assert_eq!(starts.len(), any.len());
        // 20:00 exists only for Anna, who works until 21:00.
        let late = any.iter().find(|s| {
            s.start
                .with_timezone(&chrono_tz::Europe::Moscow)
                .format("%H:%M")
                .to_string()
                == "20:00"
        });
        assert_eq!(late.map(|s| s.master_id.as_str()), Some("m3"));
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_slot_book_it_once() {
        for store in testing::all().await {
            let sb = Arc::new(sandbox(store.clone(), chrono_tz::Europe::Moscow));
            let slot = sb.free_slots("s1", Some("m1"), day(8)).await.unwrap()[0].clone();
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let sb = sb.clone();
                let start = slot.start;
                tasks.push(tokio::spawn(
                    async move { sb.book(&request("m1", start)).await },
                ));
            }
            let mut ok = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(BookingError::SlotTaken) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            assert_eq!(ok, 1, "{:?}", store.backend());
            // An overlapping start half an hour later is refused too.
            let overlap = request("m1", slot.start + Duration::minutes(30));
            assert!(matches!(
                sb.book(&overlap).await,
                Err(BookingError::SlotTaken)
            ));
            let left = sb.free_slots("s1", Some("m1"), day(8)).await.unwrap();
            assert!(!left.iter().any(|s| s.start == slot.start));
        }
    }

    #[tokio::test]
    async fn cancel_frees_the_slot_and_reschedule_moves_the_record() {
        for store in testing::all().await {
            let sb = sandbox(store, chrono_tz::Europe::Moscow);
            let slots = sb.free_slots("s1", Some("m1"), day(8)).await.unwrap();
            let rec = sb.book(&request("m1", slots[0].start)).await.unwrap();
            let moved_to = Slot {
                master_id: "m3".into(),
                start: slots[4].start,
                duration_min: 60,
            };
            let moved = sb.reschedule(&rec.external_id, &moved_to).await.unwrap();
            assert_eq!(
                (moved.master_id.as_str(), moved.start),
                ("m3", moved_to.start)
            );
            assert!(
                sb.free_slots("s1", Some("m1"), day(8))
                    .await
                    .unwrap()
                    .iter()
                    .any(|s| s.start == slots[0].start)
            );
            sb.cancel(&rec.external_id).await.unwrap();
            let back = sb.record(&rec.external_id).await.unwrap().unwrap();
            assert_eq!(back.status, RecordStatus::Cancelled);
            assert!(matches!(
                sb.cancel(&crate::domain::rec("missing")).await,
                Err(BookingError::NotFound(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_time_off_the_grid_or_in_the_past_is_refused() {
        let sb = sandbox(testing::sqlite().await, chrono_tz::Europe::Moscow);
        let odd = Utc.with_ymd_and_hms(2030, 1, 8, 7, 10, 0).unwrap();
        assert!(matches!(
            sb.book(&request("m1", odd)).await,
            Err(BookingError::SlotTaken)
        ));
        let past = Utc.with_ymd_and_hms(2030, 1, 1, 7, 0, 0).unwrap();
        assert!(matches!(
            sb.book(&request("m1", past)).await,
            Err(BookingError::SlotTaken)
        ));
    }
}
