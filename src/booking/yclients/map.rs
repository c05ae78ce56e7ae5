//! Lenient readers for the vendor's shifting types (numbers as strings, `[]` for empty
//! objects, three date encodings), used where wire types meet the domain.

use super::*;

// ---------------------------------------------------------------------------------------------
// Lenient readers for the vendor's shifting types
// ---------------------------------------------------------------------------------------------

/// An id that arrives as `16` or `"16"`.
pub(super) fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

pub(super) fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|f| f.round() as i64))
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

pub(super) fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse().ok(),
        _ => None,
    }
}

/// `true`, `1`, `"1"`.
pub(super) fn bool_of(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => i64_of(other).is_some_and(|n| n != 0),
    }
}

pub(super) fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A service's `comment` as plain text: the YClients editor may store HTML, and the chats show
/// text as it is, so tags go (a paragraph or line break becomes a new line), entities are
/// decoded and runs of blank space close up. Nothing left means no description.
pub(super) fn description_of(v: &Value) -> Option<String> {
    let Value::String(raw) = v else {
        return None;
    };
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = rest[open + 1..].chars().next();
        let is_tag = after.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        let close = rest[open..].find('>').filter(|_| is_tag);
        let Some(close) = close else {
            // A '<' that opens no tag is text ("цена < 1000").
            text.push('<');
            rest = &rest[open + 1..];
            continue;
        };
        let tag = rest[open + 1..open + close].trim_start_matches('/');
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if matches!(name.as_str(), "br" | "p" | "div" | "li" | "ul" | "ol") {
            text.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    // A no-break space (`&nbsp;`) is whitespace below, like any other.
    let text = html_escape::decode_html_entities(&text);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.split(|c: char| c.is_whitespace() || c.is_control())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `service_ids[]` once per service of the visit, as YClients takes arrays.
pub(super) fn service_pairs(service_id: &str) -> Vec<(&'static str, String)> {
    Service::ids_in(service_id)
        .map(|id| ("service_ids[]", id.to_owned()))
        .collect()
}

/// Rubles (possibly `"1000.00"`) to kopecks.
pub(super) fn money_of(v: &Value) -> Money {
    Money(f64_of(v).map(|r| (r * 100.0).round() as i64).unwrap_or(0))
}

/// Seconds to whole minutes, never zero for a real service.
pub(super) fn minutes_of(seconds: i64) -> u32 {
    u32::try_from((seconds.max(60) + 59) / 60).unwrap_or(u32::MAX)
}

/// Reads every instant encoding the API uses: unix seconds (number or digit string), ISO 8601
/// with `+03:00` or `+0300` (with or without fractions), and the zone-less salon-local
/// `2019-01-16 16:00:00`, which is read in the company's zone.
pub fn parse_instant(v: &Value, tz: Tz) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => Utc.timestamp_opt(n.as_i64()?, 0).single(),
        Value::String(s) => parse_instant_str(s, tz),
        _ => None,
    }
}

pub(super) fn parse_instant_str(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Utc.timestamp_opt(s.parse().ok()?, 0).single();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, f) {
            return local_to_utc(tz, naive);
        }
    }
    None
}

pub(super) fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// A day as `book_dates` gives it: `"2026-09-17"` or unix seconds of (some) midnight.
pub(super) fn parse_day(v: &Value, tz: Tz) -> Option<NaiveDate> {
    if let Value::String(s) = v
        && let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
    {
        return Some(d);
    }
    // Unix midnights: the docs' samples are UTC midnights, a salon's own midnight is earlier;
    // read in the salon's (east-of-UTC for every Russian zone) zone, both give the right date.
    parse_instant(v, tz).map(|t| t.with_timezone(&tz).date_naive())
}
