//! `zapis bookings`: each booking with its state in our store and what we last knew of it in
//! every linked system, so a support person sees at a glance where things disagree.

use crate::domain::BusinessId;
use crate::domain::System;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::{Booking, BookingId};
use crate::normalize::Phone;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Default)]
pub struct BookingsFilter {
    /// Only visits still ahead and not cancelled.
    pub upcoming: bool,
    pub client: Option<Phone>,
}

/// The last job of one booking for one system: what we last asked of it and how it went.
async fn last_job(
    store: &Store,
    business_id: &BusinessId,
    system: System,
    booking_id: &BookingId,
) -> Result<Option<(String, String)>, StoreError> {
    crate::sync::Queue::new(store.clone())
        .last_of_ordering_key(business_id, system, &format!("booking:{booking_id}"))
        .await
}

/// What we know of one booking in one linked system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub system: System,
    /// The booking's id there, when linked.
    pub external_id: Option<String>,
    /// The status we last saw there (or wrote there ourselves).
    pub seen: Option<String>,
    /// False when what we last saw there contradicts our store.
    pub agrees: bool,
    /// The last job for this booking there: operation and state.
    pub last_job: Option<(String, String)>,
}

/// The booking as the schedule and the CRM have it, as far as we know.
pub async fn booking_sides(
    store: &Store,
    business_id: &BusinessId,
    schedule: System,
    crm: Option<System>,
    b: &Booking,
) -> Result<Vec<Side>, StoreError> {
    let known = store.known_states(business_id, &b.id).await?;
    let mut systems = vec![schedule];
    systems.extend(crm);
    let mut sides = Vec::with_capacity(systems.len());
    for system in systems {
        let external_id = store
            .external_id(business_id, "booking", &b.id, system)
            .await?
            .or_else(|| {
                (system == schedule)
                    .then(|| b.external_id.clone().map(String::from))
                    .flatten()
            });
        let seen = known
            .iter()
            .find(|k| k.system == system)
            .map(|k| k.status.clone());
        let agrees = seen.as_deref().is_none_or(|seen| {
            seen == b.status.as_str() || (b.status.is_active() && seen == "booked")
        });
        let last_job = last_job(store, business_id, system, &b.id).await?;
        sides.push(Side {
            system,
            external_id,
            seen,
            agrees,
            last_job,
        });
    }
    Ok(sides)
}

/// The report as text, one block per booking, soonest first.
pub async fn bookings_report(
    store: &Store,
    business_id: &BusinessId,
    schedule: System,
    crm: Option<System>,
    timezone: Tz,
    filter: &BookingsFilter,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let mut list: Vec<Booking> = store
        .bookings(business_id)
        .await?
        .into_iter()
        .filter(|b| !filter.upcoming || (b.status.is_active() && b.start > now))
        .filter(|b| filter.client.as_ref().is_none_or(|p| &b.client_phone == p))
        .collect();
    list.sort_by_key(|b| b.start);
    let mut out = String::new();
    for b in &list {
        let when = b.start.with_timezone(&timezone).format("%Y-%m-%d %H:%M");
        out.push_str(&format!(
            "{} {when} {} / {} client {} {}\n",
            b.id,
            b.service_name,
            b.master_name,
            b.client_name,
            b.client_phone.masked()
        ));
        let confirmed = store.visit_confirmed_at(&b.id).await?;
        out.push_str(&format!(
            "  store     {}{}\n",
            b.status.as_str(),
            if confirmed.is_some() {
                ", visit confirmed by the client"
            } else {
                ""
            }
        ));
        for side in booking_sides(store, business_id, schedule, crm, b).await? {
            let mut line = format!(
                "  {:<9} {}",
                side.system,
                side.external_id
                    .as_deref()
                    .map_or("not linked".to_string(), |l| format!("#{l}"))
            );
            if let Some(seen) = &side.seen {
                line.push_str(&format!(", last seen {seen}"));
                if !side.agrees {
                    line.push_str(" (DISAGREES with the store)");
                }
            }
            if let Some((operation, state)) = &side.last_job {
                line.push_str(&format!(", last job {operation} {state}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        let chat = b.chat.as_ref().map_or("none".to_string(), |c| c.key());
        out.push_str(&format!("  chat      {chat}\n"));
    }
    if list.is_empty() {
        out.push_str("no bookings\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::testing;
    use chrono::TimeZone;

    fn booking(id: &str, phone: &str, day: u32) -> Booking {
        Booking {
            external_id: Some(crate::domain::rec(&format!("7{day}:h"))),
            ..testing::booking(
                id,
                phone,
                Utc.with_ymd_and_hms(2030, 1, day, 9, 0, 0).unwrap(),
            )
        }
    }

    #[tokio::test]
    async fn shows_every_side_and_flags_disagreement() {
        for store in testing::all().await {
            let now = Utc.with_ymd_and_hms(2030, 1, 5, 0, 0, 0).unwrap();
            store
                .insert_booking(&booking("a", "+79123456789", 10))
                .await
                .unwrap();
            store
                .insert_booking(&booking("b", "+79990000000", 11))
                .await
                .unwrap();
            store
                .insert_booking(&booking("past", "+79123456789", 2))
                .await
                .unwrap();
            store
                .put_link(&bid("b1"), "booking", "a", System::AmoCrm, "555", now)
                .await
                .unwrap();
            // The schedule was last seen with the visit cancelled while we still hold it booked.
            store
                .put_known(
                    &bid("b1"),
                    &crate::domain::bk("a"),
                    System::Yclients,
                    "x",
                    "cancelled_by_business",
                    now,
                )
                .await
                .unwrap();
            let filter = BookingsFilter {
                upcoming: true,
                client: Some(Phone::parse("8 912 345-67-89").unwrap()),
            };
            let text = bookings_report(
                &store,
                &bid("b1"),
                System::Yclients,
                Some(System::AmoCrm),
                chrono_tz::Europe::Moscow,
                &filter,
                now,
            )
            .await
            .unwrap();
            assert!(text.contains("a 2030-01-10 12:00"), "{text}");
            assert!(!text.contains("past"), "{text}");
            assert!(!text.contains("\nb "), "{text}");
            assert!(
                text.contains("yclients  #710:h, last seen cancelled_by_business (DISAGREES"),
                "{text}"
            );
            assert!(text.contains("amocrm    #555"), "{text}");
            assert!(text.contains("chat      telegram:42"), "{text}");
            assert!(!text.contains("+79123456789"), "phones are masked: {text}");
        }
    }
}
