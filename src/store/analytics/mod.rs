//! The marketer's Sources page: per source of the clients (a tracked link, a raw deep-link
//! payload, a UTM set, or none), over a period, how many chats started and reached the contact
//! step, how many bookings were made and how they ended, and the same as a series of days or
//! weeks in the business's zone. Counted in SQL (one `GROUP BY` over the hourly roll-up of chat
//! events, one over `bookings` by their stored source key), never by loading rows; the console
//! renders what these return.

use crate::domain::BusinessId;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use sqlx::Row;

mod buckets;

use buckets::{bucket_sql, bucket_start, monday, offsets};

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

impl Store {
    /// Every source with chats or bookings in `[from, to)`, the most bookings first.
    pub async fn source_funnel(
        &self,
        business_id: &BusinessId,
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
                .bind(business_id.as_str())
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
        business_id: &BusinessId,
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
                .bind(business_id.as_str())
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
mod tests;
