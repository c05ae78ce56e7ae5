//! The business's zone in the Sources page's series: its UTC offsets over a period, the SQL
//! expression that numbers an instant's local day or week, and the date each number stands for.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::Bucket;
use crate::store::StoreError;

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
pub(super) fn offsets(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, i64)> {
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
pub(super) fn bucket_sql(bucket: Bucket, segments: &[(i64, i64)]) -> String {
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

pub(super) fn bucket_start(bucket: Bucket, n: i64) -> Result<NaiveDate, StoreError> {
    match bucket {
        Bucket::Day => epoch_day(n),
        Bucket::Week => epoch_day(n * 7 - 3),
    }
}

pub(super) fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}
