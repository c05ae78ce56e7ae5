//! The Sources page's counts on both backends, from real conversations and bookings.

use crate::domain::bid;
use std::sync::Arc;

use super::*;
use crate::booking::sandbox::Sandbox;
use crate::clock::SystemClock;
use crate::conversation::tests::pick_a_time;
use crate::conversation::{ChatEvent, Conversations};
use crate::dialog::Reply;
use crate::domain::{Booking, BookingStatus, Channel, ChatRef, Source, Utm};
use crate::normalize::Phone;
use crate::store::{FunnelStep, TrackedLink, TurnEvent, testing};

fn key(kind: SourceKind, label: &str) -> SourceKey {
    SourceKey {
        kind,
        label: label.into(),
    }
}

fn row<'a>(rows: &'a [SourceRow], k: &SourceKey) -> &'a Funnel {
    &rows
        .iter()
        .find(|r| &r.key == k)
        .unwrap_or_else(|| panic!("no row {k:?} in {rows:?}"))
        .funnel
}

async fn confirm(conv: &Conversations, chat: &ChatRef, shown: Vec<Reply>, name: &str) {
    let mut shown = shown;
    // A client who has not agreed yet is asked to before the phone.
    let agree = shown
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .find(|b| b.label.contains("Согласен"))
        .map(ChatEvent::pressing);
    if let Some(event) = agree {
        shown = conv.handle(chat, None, event).await.expect("agree");
    }
    if shown.iter().any(|r| r.request_contact) {
        shown = conv
            .handle(chat, None, ChatEvent::Text("+7 916 555-12-34".into()))
            .await
            .expect("phone");
    }
    if !shown.iter().any(|r| r.text.contains("Проверьте запись")) {
        shown = conv
            .handle(chat, None, ChatEvent::Text(name.into()))
            .await
            .expect("name");
    }
    let confirm = shown
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .find(|b| b.label.contains("Подтвердить"))
        .expect("a confirm button");
    let event = ChatEvent::pressing(confirm);
    conv.handle(chat, None, event).await.expect("confirm");
}

fn booking(id: &str, source: Source, status: BookingStatus, at: DateTime<Utc>) -> Booking {
    Booking {
        id: crate::domain::bk(id),
        business_id: bid("b1"),
        client_phone: Phone::parse("+79161112233").expect("phone"),
        client_name: "Анна".into(),
        client_email: None,
        service_id: "s1".into(),
        service_name: "Стрижка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: at + Duration::days(2),
        duration_min: 60,
        price: Money::from_rubles(1500),
        status,
        source,
        chat: None,
        external_id: None,
        created_at: at,
    }
}

/// Chats driven through the real conversation — a tracked link, a raw payload, direct
/// chats — and bookings that came without a chat: each source counts its own.
#[tokio::test]
async fn the_funnel_counts_each_source_from_real_conversations() {
    for store in testing::all().await {
        let business = crate::config::Config::demo("sqlite::memory:").business;
        let b = business.id.clone();
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
        let sandbox = Sandbox::new(store.clone(), &b, business.timezone, clock.clone());
        let conv = Conversations::new(store.clone(), Arc::new(sandbox), business, clock);
        let utm = Utm {
            source: Some("vk".into()),
            medium: Some("cpc".into()),
            campaign: Some("autumn".into()),
            ..Utm::default()
        };
        let link = TrackedLink {
            token: "autumn".into(),
            name: "Осень ВК".into(),
            utm: utm.clone(),
        };
        let from = Utc::now() - Duration::minutes(1);
        store
            .create_tracked_link(&b, &link, from)
            .await
            .expect("link");
        let tg = |id: &str| ChatRef::new(Channel::Telegram, id);

        // The link: one chat books (and comes), one only looks.
        let shown = pick_a_time(&conv, &tg("1"), Some("autumn")).await;
        confirm(&conv, &tg("1"), shown, "Анна").await;
        conv.handle(
            &tg("2"),
            None,
            ChatEvent::Start {
                payload: Some("autumn".into()),
            },
        )
        .await
        .expect("start");
        // A raw payload: reaches the phone step, goes no further.
        pick_a_time(&conv, &tg("3"), Some("flyer")).await;
        // Direct: one books (and does not come); one starts twice.
        let shown = pick_a_time(&conv, &tg("4"), None).await;
        confirm(&conv, &tg("4"), shown, "Борис").await;
        for _ in 0..2 {
            conv.handle(&tg("5"), None, ChatEvent::Start { payload: None })
                .await
                .expect("start");
        }
        let booked: Vec<(String, String)> = sqlx::query_as(
            "SELECT chat_id, id FROM bookings WHERE business_id = $1 ORDER BY chat_id",
        )
        .bind(b.as_str())
        .fetch_all(store.pool())
        .await
        .expect("bookings");
        assert_eq!(booked.len(), 2, "{booked:?}");
        let now = Utc::now();
        for ((_, id), status) in booked
            .iter()
            .zip([BookingStatus::Visited, BookingStatus::NoShow])
        {
            store
                .set_booking_status(&crate::domain::bk(id), status, now)
                .await
                .expect("status");
        }
        // Without a chat: a web form's UTM booking (cancelled), a record an admin made in
        // the schedule and a refused request, which are no bookings of any source.
        let mut web = Source::direct(Channel::WebForm);
        web.utm = Utm {
            source: Some("yandex".into()),
            medium: Some("cpc".into()),
            ..Utm::default()
        };
        for (id, source, status) in [
            ("web", web, BookingStatus::CancelledByClient),
            (
                "admin",
                Source::direct(Channel::Schedule),
                BookingStatus::Visited,
            ),
            (
                "refused",
                Source::direct(Channel::Telegram),
                BookingStatus::Failed,
            ),
        ] {
            let mut bk = booking(id, source, status, now);
            bk.business_id = b.clone();
            store.insert_booking(&bk).await.expect("insert");
        }

        let to = Utc::now() + Duration::minutes(1);
        let rows = store.source_funnel(&b, from, to).await.expect("funnel");
        assert_eq!(rows.len(), 4, "{rows:?}");
        let price = Money::from_rubles(2000);
        assert_eq!(
            *row(&rows, &key(SourceKind::Link, "Осень ВК")),
            Funnel {
                chats_started: 2,
                reached_contact: 1,
                bookings: 1,
                visits: 1,
                revenue: price,
                ..Funnel::default()
            },
            "{:?}",
            store.backend()
        );
        assert_eq!(
            *row(&rows, &key(SourceKind::Payload, "flyer")),
            Funnel {
                chats_started: 1,
                reached_contact: 1,
                ..Funnel::default()
            }
        );
        // Each start counts: chat 5 started twice.
        assert_eq!(
            *row(&rows, &SourceKey::direct()),
            Funnel {
                chats_started: 3,
                reached_contact: 1,
                bookings: 1,
                no_shows: 1,
                ..Funnel::default()
            }
        );
        assert_eq!(
            *row(&rows, &key(SourceKind::Utm, "yandex / cpc / ")),
            Funnel {
                bookings: 1,
                cancelled: 1,
                ..Funnel::default()
            }
        );
        // The series of one source adds up to its row.
        let tz: Tz = "Europe/Moscow".parse().expect("zone");
        let series = store
            .funnel_series(
                &b,
                from,
                to,
                Bucket::Day,
                tz,
                Some(&key(SourceKind::Link, "Осень ВК")),
            )
            .await
            .expect("series");
        let mut sum = Funnel::default();
        for (_, f) in &series {
            sum.add(f);
        }
        assert_eq!(sum, *row(&rows, &key(SourceKind::Link, "Осень ВК")));
    }
}

/// The contact step counts once per start, however often the client goes back to the
/// times and on again; a new start counts anew.
#[tokio::test]
async fn the_contact_step_counts_once_per_start() {
    for store in testing::all().await {
        let at = utc("2026-03-02T10:15:00Z");
        let direct = Source::direct(Channel::Telegram);
        for step in [
            FunnelStep::Start,
            FunnelStep::Contact,
            FunnelStep::Contact,
            FunnelStep::Start,
            FunnelStep::Contact,
        ] {
            event(&store, "telegram:1", step, &direct, at).await;
        }
        event(&store, "telegram:2", FunnelStep::Contact, &direct, at).await;
        let rows = store
            .source_funnel(
                &bid("b1"),
                utc("2026-03-02T00:00:00Z"),
                utc("2026-03-03T00:00:00Z"),
            )
            .await
            .expect("funnel");
        assert_eq!(
            rows[0].funnel,
            Funnel {
                chats_started: 2,
                reached_contact: 3,
                ..Funnel::default()
            },
            "{:?}",
            store.backend()
        );
    }
}

/// Migration 0030 classified the bookings stored before it with the rules
/// [`SourceKey::of_booking`] applies to new ones: its statement, run again over bookings
/// written now, gives what they were written with.
#[tokio::test]
async fn the_migrations_classification_agrees_with_the_bookings() {
    let migration = |backend| match backend {
        crate::store::Backend::Sqlite => {
            include_str!("../../../migrations/sqlite/0030_funnel_rollup.sql")
        }
        crate::store::Backend::Postgres => {
            include_str!("../../../migrations/postgres/0030_funnel_rollup.sql")
        }
    };
    for store in testing::all().await {
        let mut link = Source::direct(Channel::Telegram);
        link.payload = Some("l_1".into());
        link.link_name = Some("Весна «VK»".into());
        link.utm.source = Some("vk".into());
        let mut payload = Source::direct(Channel::Max);
        payload.payload = Some("src_flyer".into());
        let mut utm = Source::direct(Channel::WebForm);
        utm.utm.medium = Some("cpc".into());
        utm.utm.campaign = Some("o'clock \"sale\"".into());
        let mut content_only = Source::direct(Channel::WebForm);
        content_only.utm.content = Some("banner".into());
        let sources = [
            link,
            payload,
            utm,
            content_only,
            Source::direct(Channel::Telegram),
            Source::direct(Channel::Schedule),
        ];
        let at = utc("2026-03-02T10:15:00Z");
        for (i, source) in sources.iter().enumerate() {
            store
                .insert_booking(&booking(
                    &format!("bk{i}"),
                    source.clone(),
                    BookingStatus::Booked,
                    at,
                ))
                .await
                .expect("insert");
        }
        let read = || async {
            sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
                "SELECT id, src_kind, src_label FROM bookings ORDER BY id",
            )
            .fetch_all(store.pool())
            .await
            .expect("read")
        };
        let written = read().await;
        let expected: Vec<(String, Option<String>, Option<String>)> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let k = SourceKey::of_booking(s);
                (
                    format!("bk{i}"),
                    k.as_ref().map(|k| k.kind.as_str().to_string()),
                    k.map(|k| k.label),
                )
            })
            .collect();
        assert_eq!(written, expected);
        assert_eq!(
            written[5].1, None,
            "a schedule record is no source's booking"
        );
        let update = migration(store.backend());
        let start = update.find("UPDATE bookings SET").expect("the backfill");
        let end = start + update[start..].find(';').expect("its end");
        sqlx::query("UPDATE bookings SET src_kind = 'x', src_label = 'x'")
            .execute(store.pool())
            .await
            .expect("reset");
        sqlx::query(sqlx::AssertSqlSafe(update[start..end].to_string()))
            .execute(store.pool())
            .await
            .expect("the migration's backfill");
        assert_eq!(read().await, written, "{:?}", store.backend());
    }
}

async fn event(store: &Store, chat: &str, step: FunnelStep, source: &Source, at: DateTime<Utc>) {
    let event = TurnEvent { step, source };
    store
        .save_turn(&bid("b1"), chat, &[], Some(event), "{}", at)
        .await
        .expect("turn");
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("instant").to_utc()
}

/// The period is `[from, to)`: what happens at `from` counts, what happens at `to` does not.
#[tokio::test]
async fn the_period_includes_its_start_and_excludes_its_end() {
    for store in testing::all().await {
        let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-03-08T00:00:00Z"));
        let direct = Source::direct(Channel::Telegram);
        let ms = Duration::milliseconds(1);
        for (i, at) in [from - ms, from, to - ms, to].into_iter().enumerate() {
            event(
                &store,
                &format!("telegram:{i}"),
                FunnelStep::Start,
                &direct,
                at,
            )
            .await;
            store
                .insert_booking(&booking(
                    &format!("bk{i}"),
                    direct.clone(),
                    BookingStatus::Booked,
                    at,
                ))
                .await
                .expect("insert");
        }
        let rows = store
            .source_funnel(&bid("b1"), from, to)
            .await
            .expect("funnel");
        assert_eq!(
            rows,
            [SourceRow {
                key: SourceKey::direct(),
                funnel: Funnel {
                    chats_started: 2,
                    bookings: 2,
                    ..Funnel::default()
                }
            }],
            "{:?}",
            store.backend()
        );
        assert!(
            store
                .source_funnel(&bid("b2"), from, to)
                .await
                .expect("funnel")
                .is_empty()
        );
    }
}

/// Weeks start on Monday in the business's zone, across a change to summer time: Berlin is
/// UTC+1 before 29 March 2026 and UTC+2 after.
#[tokio::test]
async fn weeks_are_the_business_zones_weeks_from_monday() {
    for store in testing::all().await {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        let mut flyer = Source::direct(Channel::Max);
        flyer.payload = Some("flyer".into());
        let direct = Source::direct(Channel::Max);
        for (chat, at, source) in [
            // Monday 23 March 00:30 in Berlin, Sunday in UTC.
            ("max:1", "2026-03-22T23:30:00Z", &flyer),
            // Sunday 29 March 23:30 in Berlin (summer time), still the week of the 23rd.
            ("max:2", "2026-03-29T21:30:00Z", &flyer),
            // Monday 30 March 00:30 in Berlin.
            ("max:3", "2026-03-29T22:30:00Z", &flyer),
            ("max:4", "2026-03-29T22:30:00Z", &direct),
        ] {
            event(&store, chat, FunnelStep::Start, source, utc(at)).await;
        }
        let (from, to) = (utc("2026-03-16T00:00:00Z"), utc("2026-04-06T00:00:00Z"));
        let weeks = store
            .funnel_series(
                &bid("b1"),
                from,
                to,
                Bucket::Week,
                tz,
                Some(&key(SourceKind::Payload, "flyer")),
            )
            .await
            .expect("series");
        let started: Vec<(String, i64)> = weeks
            .iter()
            .map(|(d, f)| (d.to_string(), f.chats_started))
            .collect();
        assert_eq!(
            started,
            [
                ("2026-03-16".to_string(), 0),
                ("2026-03-23".to_string(), 2),
                ("2026-03-30".to_string(), 1),
                ("2026-04-06".to_string(), 0),
            ],
            "{:?}",
            store.backend()
        );
        let days = store
            .funnel_series(
                &bid("b1"),
                utc("2026-03-29T00:00:00Z"),
                utc("2026-03-31T00:00:00Z"),
                Bucket::Day,
                tz,
                None,
            )
            .await
            .expect("series");
        let started: Vec<(String, i64)> = days
            .iter()
            .map(|(d, f)| (d.to_string(), f.chats_started))
            .collect();
        assert_eq!(
            started,
            [
                ("2026-03-29".to_string(), 1),
                ("2026-03-30".to_string(), 2),
                ("2026-03-31".to_string(), 0),
            ],
            "{:?}",
            store.backend()
        );
    }
}

#[test]
fn a_zone_without_changes_is_one_offset_and_a_change_is_found_to_the_second() {
    let moscow: Tz = "Europe/Moscow".parse().expect("zone");
    let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-04-01T00:00:00Z"));
    assert_eq!(offsets(moscow, from, to), [(i64::MAX, 3 * 3_600_000)]);
    let berlin: Tz = "Europe/Berlin".parse().expect("zone");
    assert_eq!(
        offsets(berlin, from, to),
        [
            (to_millis(utc("2026-03-29T01:00:00Z")), 3_600_000),
            (i64::MAX, 7_200_000)
        ]
    );
}
