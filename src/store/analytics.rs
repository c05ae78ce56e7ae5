//! The marketer's Sources page: per source of the clients (a tracked link, a raw deep-link
//! payload, a UTM set, or none), over a period, how many chats started and reached the contact
//! step, how many bookings were made and how they ended, and the same as a series of days or
//! weeks in the business's zone. Counted in SQL (one `GROUP BY` over the hourly roll-up of chat
//! events, one over `bookings` by their stored source key), never by loading rows; the console
//! renders what these return.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::Row;

use super::{Store, StoreError, to_millis};
use crate::domain::{Channel, Money, Source};

/// How a source is told apart, in the order a chat's source is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// One of our tracked links: grouped under the link's name.
    Link,
    /// A deep-link payload that is no tracked link: grouped under the payload.
    Payload,
    /// No payload, but UTM tags (a web form).
    Utm,
    /// Nothing: the client found the bot themselves.
    Direct,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Link => "link",
            SourceKind::Payload => "payload",
            SourceKind::Utm => "utm",
            SourceKind::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        Some(match s {
            "link" => SourceKind::Link,
            "payload" => SourceKind::Payload,
            "utm" => SourceKind::Utm,
            "direct" => SourceKind::Direct,
            _ => return None,
        })
    }
}

/// One row of the Sources page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceKey {
    pub kind: SourceKind,
    /// The link's name, the payload, `source / medium / campaign` (a missing tag left empty),
    /// or `""` for direct.
    pub label: String,
}

impl SourceKey {
    pub fn direct() -> SourceKey {
        SourceKey {
            kind: SourceKind::Direct,
            label: String::new(),
        }
    }

    /// A chat's source as the page groups it. Migration 0030 classifies stored rows with the
    /// same rules in SQL.
    pub fn of(source: &Source) -> SourceKey {
        let utm = &source.utm;
        let (kind, label) = if let Some(name) = &source.link_name {
            (SourceKind::Link, name.clone())
        } else if let Some(payload) = &source.payload {
            (SourceKind::Payload, payload.clone())
        } else if utm.source.is_some() || utm.medium.is_some() || utm.campaign.is_some() {
            let tag = |t: &Option<String>| t.clone().unwrap_or_default();
            (
                SourceKind::Utm,
                format!(
                    "{} / {} / {}",
                    tag(&utm.source),
                    tag(&utm.medium),
                    tag(&utm.campaign)
                ),
            )
        } else {
            (SourceKind::Direct, String::new())
        };
        SourceKey { kind, label }
    }

    /// A booking's: none for a record an admin made in the schedule, which the page does not
    /// count.
    pub fn of_booking(source: &Source) -> Option<SourceKey> {
        (*source != Source::direct(Channel::Schedule)).then(|| SourceKey::of(source))
    }
}

/// The funnel of one source over a period (or one bucket of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Chats started: each start counts, so a client who comes back through a link is counted
    /// again under it.
    pub chats_started: i64,
    /// Starts whose client went on to pick a time and be asked for contacts (once per start).
    pub reached_contact: i64,
    /// Bookings made (a request the schedule refused is none; nor is a record an admin made in
    /// the schedule).
    pub bookings: i64,
    /// Of those, cancelled by the client or the business.
    pub cancelled: i64,
    /// Of those, the client came.
    pub visits: i64,
    /// Of those, the client did not come.
    pub no_shows: i64,
    /// The price of the visits the client came to. What was actually paid is in the schedule
    /// only; the store does not hold it.
    pub revenue: Money,
}

impl Funnel {
    fn add(&mut self, other: &Funnel) {
        self.chats_started += other.chats_started;
        self.reached_contact += other.reached_contact;
        self.bookings += other.bookings;
        self.cancelled += other.cancelled;
        self.visits += other.visits;
        self.no_shows += other.no_shows;
        self.revenue = Money(self.revenue.0 + other.revenue.0);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    pub key: SourceKey,
    pub funnel: Funnel,
}

/// The step of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    /// Weeks from Monday.
    Week,
}

/// What the two queries group by: the source, or a bucket of time (optionally of one source,
/// bound as `$4`, `$5`).
#[derive(Clone, Copy)]
pub(crate) enum Grouping<'a> {
    Source,
    /// The bucket number as an SQL expression over the instant `t`.
    Series {
        bucket: &'a str,
        filtered: bool,
    },
}

impl Grouping<'_> {
    fn select(&self) -> String {
        match self {
            Grouping::Source => "src_kind, src_label".into(),
            Grouping::Series { bucket, .. } => format!("{bucket} AS bucket"),
        }
    }
    fn group_by(&self) -> &'static str {
        match self {
            Grouping::Source => "src_kind, src_label",
            Grouping::Series { .. } => "bucket",
        }
    }
    fn filter(&self) -> &'static str {
        match self {
            Grouping::Series { filtered: true, .. } => " WHERE src_kind = $4 AND src_label = $5",
            _ => "",
        }
    }
}

/// Chats started and reaching the contact step, of business `$1` in `[$2, $3)`, from the
/// hourly roll-up the turns keep (migration 0030). Served by its primary key. Counted by the
/// hour: a period that starts or ends inside an hour takes that hour whole (the console asks
/// for whole days, which in a zone of whole-hour offsets are whole hours).
pub(crate) fn chats_sql(grouping: Grouping<'_>) -> String {
    format!(
        "SELECT {select}, CAST(SUM(started) AS BIGINT) AS started, \
           CAST(SUM(reached) AS BIGINT) AS reached \
         FROM (SELECT hour AS t, started, reached, src_kind, src_label FROM funnel_hours \
           WHERE business_id = $1 AND hour > $2 - 3600000 AND hour < $3) e{filter} \
         GROUP BY {group}",
        select = grouping.select(),
        filter = grouping.filter(),
        group = grouping.group_by(),
    )
}

/// Bookings made by business `$1`'s clients in `[$2, $3)` and how they ended. Served by
/// `bookings_funnel` alone (whose conditions this repeats): a record an admin made in the
/// schedule has no `src_kind`.
pub(crate) fn bookings_sql(grouping: Grouping<'_>) -> String {
    format!(
        "SELECT {select}, COUNT(*) AS bookings, \
           CAST(SUM(CASE WHEN status IN ('cancelled_by_client', 'cancelled_by_business') \
             THEN 1 ELSE 0 END) AS BIGINT) AS cancelled, \
           CAST(SUM(CASE WHEN status = 'visited' THEN 1 ELSE 0 END) AS BIGINT) AS visits, \
           CAST(SUM(CASE WHEN status = 'no_show' THEN 1 ELSE 0 END) AS BIGINT) AS no_shows, \
           CAST(SUM(CASE WHEN status = 'visited' THEN price ELSE 0 END) AS BIGINT) AS revenue \
         FROM (SELECT created_at AS t, status, price, src_kind, src_label FROM bookings \
           WHERE business_id = $1 AND created_at >= $2 AND created_at < $3 \
             AND status <> 'failed' AND src_kind IS NOT NULL) b{filter} \
         GROUP BY {group}",
        select = grouping.select(),
        filter = grouping.filter(),
        group = grouping.group_by(),
    )
}

/// The two statements of [`Store::source_funnel`] (chat events, bookings), for the benchmark's
/// `EXPLAIN ANALYZE`. Parameters: business, from, to (unix ms).
#[doc(hidden)]
pub fn source_funnel_sql() -> [String; 2] {
    [chats_sql(Grouping::Source), bookings_sql(Grouping::Source)]
}

fn chats_of(row: &sqlx::any::AnyRow) -> Result<Funnel, StoreError> {
    Ok(Funnel {
        chats_started: row.try_get("started")?,
        reached_contact: row.try_get("reached")?,
        ..Funnel::default()
    })
}

fn bookings_of(row: &sqlx::any::AnyRow) -> Result<Funnel, StoreError> {
    Ok(Funnel {
        bookings: row.try_get("bookings")?,
        cancelled: row.try_get("cancelled")?,
        visits: row.try_get("visits")?,
        no_shows: row.try_get("no_shows")?,
        revenue: Money(row.try_get("revenue")?),
        ..Funnel::default()
    })
}

fn key_of(row: &sqlx::any::AnyRow) -> Result<SourceKey, StoreError> {
    let kind: String = row.try_get("src_kind")?;
    Ok(SourceKey {
        kind: SourceKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("source kind {kind:?}")))?,
        label: row.try_get("src_label")?,
    })
}

const DAY_MS: i64 = 86_400_000;

/// The zone's UTC offset at `t`, in milliseconds.
fn offset_ms(tz: Tz, secs: i64) -> i64 {
    let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1000
}

/// The zone's offsets over `[from, to)`: `(end, offset)` in milliseconds, each offset in force
/// until its end, the last one open. Found hour by hour, each change to the second.
fn offsets(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, i64)> {
    let mut segments = Vec::new();
    let mut t = from.timestamp();
    let end = to.timestamp() + 1;
    let mut current = offset_ms(tz, t);
    while t < end {
        let next = (t + 3600).min(end);
        let offset = offset_ms(tz, next);
        if offset != current {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_ms(tz, mid) == current {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            segments.push((hi * 1000, current));
            current = offset_ms(tz, hi);
        }
        t = next;
    }
    segments.push((i64::MAX, current));
    segments
}

/// The bucket number of instant `t` (ms): local days since 1970-01-01, or local weeks from the
/// Monday 1969-12-29.
fn bucket_sql(bucket: Bucket, segments: &[(i64, i64)]) -> String {
    let local = match segments {
        [(_, offset)] => format!("(t + {offset})"),
        _ => {
            let mut case = String::from("(CASE");
            for (end, offset) in &segments[..segments.len() - 1] {
                case.push_str(&format!(" WHEN t < {end} THEN t + {offset}"));
            }
            let last = segments.last().map_or(0, |s| s.1);
            case.push_str(&format!(" ELSE t + {last} END)"));
            case
        }
    };
    match bucket {
        Bucket::Day => format!("({local} / {DAY_MS})"),
        // 1970-01-01 was a Thursday: three days on, day numbers start a week on Monday.
        Bucket::Week => format!("(({local} / {DAY_MS} + 3) / 7)"),
    }
}

fn epoch_day(n: i64) -> Result<NaiveDate, StoreError> {
    DateTime::UNIX_EPOCH
        .date_naive()
        .checked_add_signed(Duration::days(n))
        .ok_or_else(|| StoreError::Corrupt(format!("day {n} out of range")))
}

fn bucket_start(bucket: Bucket, n: i64) -> Result<NaiveDate, StoreError> {
    match bucket {
        Bucket::Day => epoch_day(n),
        Bucket::Week => epoch_day(n * 7 - 3),
    }
}

fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

impl Store {
    /// Every source with chats or bookings in `[from, to)`, the most bookings first.
    pub async fn source_funnel(
        &self,
        business_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SourceRow>, StoreError> {
        let mut by_key: BTreeMap<SourceKey, Funnel> = BTreeMap::new();
        let (chats, bookings) = (chats_sql(Grouping::Source), bookings_sql(Grouping::Source));
        for (sql, of) in [
            (
                chats,
                chats_of as fn(&sqlx::any::AnyRow) -> Result<Funnel, StoreError>,
            ),
            (bookings, bookings_of),
        ] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(business_id)
                .bind(to_millis(from))
                .bind(to_millis(to))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                by_key.entry(key_of(row)?).or_default().add(&of(row)?);
            }
        }
        let mut rows: Vec<SourceRow> = by_key
            .into_iter()
            .map(|(key, funnel)| SourceRow { key, funnel })
            .collect();
        rows.sort_by(|a, b| {
            (b.funnel.bookings, b.funnel.chats_started)
                .cmp(&(a.funnel.bookings, a.funnel.chats_started))
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(rows)
    }

    /// The funnel of `[from, to)` by day or week (from Monday) in the business's zone `tz`,
    /// of one source or of all; every bucket of the period is there, empty ones as zeros.
    /// A chat is counted once per bucket it had the event in.
    pub async fn funnel_series(
        &self,
        business_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Bucket,
        tz: Tz,
        source: Option<&SourceKey>,
    ) -> Result<Vec<(NaiveDate, Funnel)>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let expr = bucket_sql(bucket, &offsets(tz, from, to));
        let grouping = Grouping::Series {
            bucket: &expr,
            filtered: source.is_some(),
        };
        let mut by_day: BTreeMap<NaiveDate, Funnel> = BTreeMap::new();
        let first = from.with_timezone(&tz).date_naive();
        let last = (to - Duration::milliseconds(1))
            .with_timezone(&tz)
            .date_naive();
        let (mut day, last) = match bucket {
            Bucket::Day => (first, last),
            Bucket::Week => (monday(first), monday(last)),
        };
        let step = match bucket {
            Bucket::Day => Duration::days(1),
            Bucket::Week => Duration::days(7),
        };
        while day <= last {
            by_day.insert(day, Funnel::default());
            day += step;
        }
        for (sql, of) in [
            (
                chats_sql(grouping),
                chats_of as fn(&sqlx::any::AnyRow) -> Result<Funnel, StoreError>,
            ),
            (bookings_sql(grouping), bookings_of),
        ] {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(business_id)
                .bind(to_millis(from))
                .bind(to_millis(to));
            if let Some(key) = source {
                query = query.bind(key.kind.as_str()).bind(key.label.as_str());
            }
            for row in &query.fetch_all(&self.pool).await? {
                let n: i64 = row.try_get("bucket")?;
                by_day
                    .entry(bucket_start(bucket, n)?)
                    .or_default()
                    .add(&of(row)?);
            }
        }
        Ok(by_day.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
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
            .map(|b| b.data.clone());
        if let Some(data) = agree {
            shown = conv
                .handle(chat, None, ChatEvent::Button(data))
                .await
                .expect("agree");
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
        let data = shown
            .iter()
            .flat_map(|r| r.buttons.iter().flatten())
            .find(|b| b.label.contains("Подтвердить"))
            .expect("a confirm button")
            .data
            .clone();
        conv.handle(chat, None, ChatEvent::Button(data))
            .await
            .expect("confirm");
    }

    fn booking(id: &str, source: Source, status: BookingStatus, at: DateTime<Utc>) -> Booking {
        Booking {
            id: id.into(),
            business_id: "b1".into(),
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
            .bind(&b)
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
                    .set_booking_status(id, status, now)
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
                    "b1",
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
                include_str!("../../migrations/sqlite/0030_funnel_rollup.sql")
            }
            crate::store::Backend::Postgres => {
                include_str!("../../migrations/postgres/0030_funnel_rollup.sql")
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

    async fn event(
        store: &Store,
        chat: &str,
        step: FunnelStep,
        source: &Source,
        at: DateTime<Utc>,
    ) {
        let event = TurnEvent { step, source };
        store
            .save_turn("b1", chat, &[], Some(event), "{}", at)
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
            let rows = store.source_funnel("b1", from, to).await.expect("funnel");
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
                    .source_funnel("b2", from, to)
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
                    "b1",
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
                    "b1",
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
}
