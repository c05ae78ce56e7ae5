use super::*;
use crate::domain::Utm;
use crate::domain::bid;
use crate::store::testing;
use chrono::TimeZone;

fn booking(id: &str, phone: &str, chat: &str, start_h: u32) -> Booking {
    let start = Utc.with_ymd_and_hms(2030, 1, 10, start_h, 0, 0).unwrap();
    Booking {
        source: Source {
            channel: Channel::Telegram,
            payload: Some("src_landing".into()),
            link_name: None,
            utm: Utm {
                source: Some("yandex".into()),
                ..Utm::default()
            },
        },
        chat: Some(ChatRef::new(Channel::Telegram, chat)),
        ..testing::booking(id, phone, start)
    }
}

#[tokio::test]
async fn a_clients_comment_is_stored_with_the_booking() {
    for store in testing::all().await {
        let with = booking("bk-c1", "8 912 345-67-89", "42", 9);
        store
            .insert_booking_with_comment(&with, Some("Аллергия на лак"), None)
            .await
            .unwrap();
        let without = booking("bk-c2", "8 912 345-67-89", "42", 11);
        store
            .insert_booking_with_comment(&without, None, None)
            .await
            .unwrap();
        assert_eq!(
            store
                .booking_comment(&crate::domain::bk("bk-c1"))
                .await
                .unwrap()
                .as_deref(),
            Some("Аллергия на лак")
        );
        assert_eq!(
            store
                .booking_comment(&crate::domain::bk("bk-c2"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .booking_comment(&crate::domain::bk("missing"))
                .await
                .unwrap(),
            None
        );
        // The booking itself is stored as by insert_booking.
        assert_eq!(
            store
                .booking(&bid("b1"), &crate::domain::bk("bk-c1"))
                .await
                .unwrap(),
            Some(with)
        );
    }
}

/// Books `id` from chat `42` at `hour` with `consent` (when asked for) and returns the
/// agreement the client's card holds after it.
async fn book_from_chat(
    store: &Store,
    id: &str,
    phone: &str,
    hour: u32,
    consent: Option<&Consent>,
) -> Option<Consent> {
    let booking = booking(id, phone, "42", hour);
    store
        .insert_booking_with_comment(&booking, None, consent)
        .await
        .unwrap();
    store
        .client_consent(&bid("b1"), &booking.client_phone)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_booking_from_the_chat_records_the_clients_consent_and_others_do_not() {
    for store in testing::all().await {
        let backend = store.backend();
        let phone = Phone::parse("8 912 345-67-89").unwrap();
        let consent = Consent {
            at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            version: "ru-0123456789ab".into(),
        };
        assert_eq!(
            book_from_chat(&store, "bk-1", "8 912 345-67-89", 9, Some(&consent)).await,
            Some(consent.clone()),
            "{backend:?}"
        );
        let (at, version): (Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT consent_at, consent_version FROM clients WHERE phone = '+79123456789'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(at, Some(to_millis(consent.at)), "{backend:?}");
        assert_eq!(version.as_deref(), Some("ru-0123456789ab"));

        // A later booking without one (consent switched off) keeps what was agreed to.
        assert_eq!(
            book_from_chat(&store, "bk-2", "+79123456789", 11, None).await,
            Some(consent.clone())
        );
        // A newer agreement replaces it.
        let newer = Consent {
            at: Utc.with_ymd_and_hms(2030, 2, 1, 0, 0, 0).unwrap(),
            version: "ru-ba9876543210".into(),
        };
        assert_eq!(
            book_from_chat(&store, "bk-3", "+79123456789", 12, Some(&newer)).await,
            Some(newer)
        );

        // The schedule's own bookings and imports come in without one.
        let other = Phone::parse("+79990000000").unwrap();
        store
            .insert_booking(&booking("bk-4", "+79990000000", "7", 13))
            .await
            .unwrap();
        assert_eq!(
            store.client_consent(&bid("b1"), &other).await.unwrap(),
            None
        );
        let nulls: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM clients WHERE phone = '+79990000000' \
             AND consent_at IS NULL AND consent_version IS NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(nulls, 1, "{backend:?}");

        // A school's applicant has no booking: the card is made for the agreement.
        let pupil = Phone::parse("+79220000000").unwrap();
        store
            .record_consent(&bid("b1"), &pupil, "Пётр", &consent, consent.at)
            .await
            .unwrap();
        assert_eq!(
            store
                .client_consent(&bid("b1"), &pupil)
                .await
                .unwrap()
                .as_ref(),
            Some(&consent)
        );
        assert_eq!(
            store.client_consent(&bid("b2"), &pupil).await.unwrap(),
            None
        );

        // `zapis forget` takes the agreement with the rest of the card.
        store.forget(&bid("b1"), &phone, Utc::now()).await.unwrap();
        let kept: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM clients WHERE consent_at IS NOT NULL \
             OR consent_version IS NOT NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(kept, 1, "only the applicant's is left on {backend:?}");
    }
}

#[tokio::test]
async fn bookings_round_trip_with_source_and_client() {
    for store in testing::all().await {
        let b = booking("bk1", "8 912 345-67-89", "42", 9);
        store.insert_booking(&b).await.unwrap();
        let back = store
            .booking(&bid("b1"), &crate::domain::bk("bk1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, b, "{:?}", store.backend());
        assert!(
            store
                .booking(&bid("b1"), &crate::domain::bk("nope"))
                .await
                .unwrap()
                .is_none()
        );
        // Another business sharing the store never reads it.
        assert!(
            store
                .booking(&bid("b2"), &crate::domain::bk("bk1"))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn one_client_per_phone_however_it_was_typed() {
    for store in testing::all().await {
        store
            .insert_booking(&booking("a", "8 912 345-67-89", "1", 9))
            .await
            .unwrap();
        store
            .insert_booking(&booking("b", "+7 912 3456789", "2", 11))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1, "{:?}", store.backend());
    }
}

#[tokio::test]
async fn upcoming_lists_by_chat_or_phone_and_skips_cancelled_and_past() {
    for store in testing::all().await {
        store
            .insert_booking(&booking("a", "+79123456789", "1", 9))
            .await
            .unwrap();
        store
            .insert_booking(&booking("b", "+79123456789", "2", 11))
            .await
            .unwrap();
        store
            .insert_booking(&booking("c", "+79990000000", "3", 12))
            .await
            .unwrap();
        store
            .insert_booking(&booking("d", "+79123456789", "1", 13))
            .await
            .unwrap();
        let t = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        store
            .set_booking_status(&crate::domain::bk("d"), BookingStatus::CancelledByClient, t)
            .await
            .unwrap();
        let chat1 = ChatRef::new(Channel::Telegram, "1");
        let by_chat = store
            .upcoming_bookings(&bid("b1"), &chat1, None, t)
            .await
            .unwrap();
        assert_eq!(
            by_chat.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        let phone = Phone::parse("+79123456789").unwrap();
        let by_phone = store
            .upcoming_bookings(&bid("b1"), &chat1, Some(&phone), t)
            .await
            .unwrap();
        assert_eq!(
            by_phone.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let later = Utc.with_ymd_and_hms(2030, 1, 10, 10, 0, 0).unwrap();
        let rest = store
            .upcoming_bookings(&bid("b1"), &chat1, Some(&phone), later)
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        let other = store
            .upcoming_bookings(&bid("other"), &chat1, Some(&phone), t)
            .await
            .unwrap();
        assert!(other.is_empty());
    }
}

#[tokio::test]
async fn confirm_and_move_update_the_booking() {
    for store in testing::all().await {
        store
            .insert_booking(&booking("a", "+79123456789", "1", 9))
            .await
            .unwrap();
        let now = Utc::now();
        store
            .confirm_booking(&crate::domain::bk("a"), &crate::domain::rec("rec-7"), now)
            .await
            .unwrap();
        let new_start = Utc.with_ymd_and_hms(2030, 1, 11, 9, 0, 0).unwrap();
        store
            .move_booking(&crate::domain::bk("a"), "m2", "Ирина", new_start, now)
            .await
            .unwrap();
        let b = store
            .booking(&bid("b1"), &crate::domain::bk("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.external_id.as_deref(), Some("rec-7"));
        assert_eq!((b.master_id.as_str(), b.start), ("m2", new_start));
    }
}

/// A record id is checked where a row is read: one no schedule would have sent (written by
/// hand) is a corrupt row naming what is wrong, not a booking the schedule cannot find.
#[tokio::test]
async fn a_stored_record_id_no_schedule_would_send_reads_as_corrupt() {
    for store in testing::all().await {
        store
            .insert_booking(&booking("a", "+79123456789", "1", 9))
            .await
            .unwrap();
        sqlx::query("UPDATE bookings SET external_id = $1 WHERE id = 'a'")
            .bind("12\n34")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store
            .booking(&bid("b1"), &crate::domain::bk("a"))
            .await
            .expect_err("a corrupt row");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains("control characters"), "{err}");
    }
}
