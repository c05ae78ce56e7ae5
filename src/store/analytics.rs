//! The marketer's Sources page: per source of the clients (a tracked link, a raw deep-link
//! payload, a UTM set, or none), over a period, how many chats started and reached the contact
//! step, how many bookings were made and how they ended, and the same as a series of days or
//! weeks in the business's zone. Counted in SQL (one `GROUP BY` over `chat_events`, one over
//! `bookings`), never by loading rows; the console renders what these return.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::Row;

use super::{Backend, Store, StoreError, to_millis};
use crate::domain::Money;

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
}

/// The funnel of one source over a period (or one bucket of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Distinct chats started.
    pub chats_started: i64,
    /// Distinct chats whose client picked a time and was asked for contacts.
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

/// A chat event's source as `src_kind`, `src_label`: what [`SourceKind`] documents.
const EVENT_SOURCE: &str = "CASE WHEN link_name IS NOT NULL THEN 'link' \
       WHEN payload IS NOT NULL THEN 'payload' \
       WHEN COALESCE(utm_source, utm_medium, utm_campaign) IS NOT NULL THEN 'utm' \
       ELSE 'direct' END AS src_kind, \
     CASE WHEN link_name IS NOT NULL THEN link_name \
       WHEN payload IS NOT NULL THEN payload \
       WHEN COALESCE(utm_source, utm_medium, utm_campaign) IS NOT NULL \
         THEN COALESCE(utm_source, '') || ' / ' || COALESCE(utm_medium, '') || ' / ' \
           || COALESCE(utm_campaign, '') \
       ELSE '' END AS src_label";

/// A booking's source (its `source` column is the serialised `Source`), classified as a chat
/// event's is. The JSON is parsed only for bookings that have a link or UTM tags: a cheap text
/// match rules the rest out first (a quote inside a JSON value is escaped, so `"utm":` only
/// matches the key).
fn booking_source(backend: Backend) -> String {
    let json = |path: &[&str]| match backend {
        Backend::Sqlite => format!("json_extract(source, '$.{}')", path.join(".")),
        Backend::Postgres => format!("(source::jsonb #>> '{{{}}}')", path.join(",")),
    };
    let link = json(&["link_name"]);
    let (us, um, uc) = (
        json(&["utm", "source"]),
        json(&["utm", "medium"]),
        json(&["utm", "campaign"]),
    );
    let has_link = "source LIKE '%\"link_name\":%'";
    let has_utm = format!("source LIKE '%\"utm\":%' AND COALESCE({us}, {um}, {uc}) IS NOT NULL");
    format!(
        "CASE WHEN {has_link} THEN 'link' WHEN source_payload IS NOT NULL THEN 'payload' \
           WHEN {has_utm} THEN 'utm' ELSE 'direct' END AS src_kind, \
         CASE WHEN {has_link} THEN COALESCE({link}, '') \
           WHEN source_payload IS NOT NULL THEN source_payload \
           WHEN {has_utm} THEN COALESCE({us}, '') || ' / ' || COALESCE({um}, '') || ' / ' \
             || COALESCE({uc}, '') \
           ELSE '' END AS src_label"
    )
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
    /// Whether rows need their source classified.
    fn classifies(&self) -> bool {
        matches!(
            self,
            Grouping::Source | Grouping::Series { filtered: true, .. }
        )
    }
    fn filter(&self) -> &'static str {
        match self {
            Grouping::Series { filtered: true, .. } => " WHERE src_kind = $4 AND src_label = $5",
            _ => "",
        }
    }
}

/// Distinct chats started and reaching the contact step, of business `$1` in `[$2, $3)`.
/// Served by `chat_events_by_time`.
pub(crate) fn chats_sql(grouping: Grouping<'_>) -> String {
    let source = if grouping.classifies() {
        format!(", {EVENT_SOURCE}")
    } else {
        String::new()
    };
    format!(
        "SELECT {select}, \
           COUNT(DISTINCT CASE WHEN step = 'start' THEN chat_key END) AS started, \
           COUNT(DISTINCT CASE WHEN step = 'contact' THEN chat_key END) AS reached \
         FROM (SELECT at AS t, kind AS step, chat_key{source} FROM chat_events \
           WHERE business_id = $1 AND at >= $2 AND at < $3) e{filter} \
         GROUP BY {group}",
        select = grouping.select(),
        filter = grouping.filter(),
        group = grouping.group_by(),
    )
}

/// Bookings made by business `$1`'s clients in `[$2, $3)` and how they ended. Served by
/// `bookings_by_created` (whose `status <> 'failed'` this repeats).
pub(crate) fn bookings_sql(backend: Backend, grouping: Grouping<'_>) -> String {
    let source = if grouping.classifies() {
        format!(", {}", booking_source(backend))
    } else {
        String::new()
    };
    format!(
        "SELECT {select}, COUNT(*) AS bookings, \
           CAST(SUM(CASE WHEN status IN ('cancelled_by_client', 'cancelled_by_business') \
             THEN 1 ELSE 0 END) AS BIGINT) AS cancelled, \
           CAST(SUM(CASE WHEN status = 'visited' THEN 1 ELSE 0 END) AS BIGINT) AS visits, \
           CAST(SUM(CASE WHEN status = 'no_show' THEN 1 ELSE 0 END) AS BIGINT) AS no_shows, \
           CAST(SUM(CASE WHEN status = 'visited' THEN price ELSE 0 END) AS BIGINT) AS revenue \
         FROM (SELECT created_at AS t, status, price{source} FROM bookings \
           WHERE business_id = $1 AND created_at >= $2 AND created_at < $3 \
             AND status <> 'failed' AND source <> '{{\"channel\":\"schedule\"}}') b{filter} \
         GROUP BY {group}",
        select = grouping.select(),
        filter = grouping.filter(),
        group = grouping.group_by(),
    )
}

/// The two statements of [`Store::source_funnel`] (chat events, bookings), for the benchmark's
/// `EXPLAIN ANALYZE`. Parameters: business, from, to (unix ms).
#[doc(hidden)]
pub fn source_funnel_sql(backend: Backend) -> [String; 2] {
    [
        chats_sql(Grouping::Source),
        bookings_sql(backend, Grouping::Source),
    ]
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
        let (chats, bookings) = (
            chats_sql(Grouping::Source),
            bookings_sql(self.backend, Grouping::Source),
        );
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
            (bookings_sql(self.backend, grouping), bookings_of),
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
            assert_eq!(
                *row(&rows, &SourceKey::direct()),
                Funnel {
                    chats_started: 2,
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
