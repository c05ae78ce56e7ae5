//! Lenient readers where the vendor is known to vary, strict where a change must be noticed;
//! redaction of samples kept for the drift report.

use super::*;

// ---------------------------------------------------------------------------------------------
// Lenient readers where the vendor is known to vary, strict where a change must be noticed
// ---------------------------------------------------------------------------------------------

/// An id that arrives as `16` or `"16"` (OSS clients model both).
pub(super) fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

pub(super) fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .trim()
            .replace([' ', '\u{a0}'], "")
            .replace(',', ".")
            .parse()
            .ok(),
        _ => None,
    }
}

pub(super) fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(super) fn money_of(v: &Value) -> Money {
    Money(f64_of(v).map(|r| (r * 100.0).round() as i64).unwrap_or(0))
}

/// Service `time` is minutes in the catalogue.
pub(super) fn minutes_of(v: &Value) -> Option<u32> {
    f64_of(v)
        .filter(|m| *m > 0.0)
        .and_then(|m| u32::try_from(m.round() as i64).ok())
}

/// Dikidi's only time format: `2025-02-17 14:15:00`, salon-local, no zone. Anything else is a
/// changed payload, not something to guess at.
pub(super) fn parse_local(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn wire_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Keeps a payload's structure (keys, types, the pattern of dates) and drops its content:
/// digits become 9, letters x, arrays keep three items. Phones and names never reach an alert.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.chars()
                .take(40)
                .map(|c| {
                    if c.is_ascii_digit() {
                        '9'
                    } else if c.is_alphabetic() {
                        'x'
                    } else {
                        c
                    }
                })
                .collect(),
        ),
        Value::Number(_) => Value::from(9),
        Value::Array(items) => Value::Array(items.iter().take(3).map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .take(20)
                .map(|(k, v)| {
                    // Keys that are ids or dates (PHP maps keyed by record or master id) are
                    // content too.
                    let key = if k.chars().any(|c| c.is_ascii_digit()) {
                        redact(&Value::String(k.clone()))
                            .as_str()
                            .unwrap_or("")
                            .to_owned()
                    } else {
                        k.clone()
                    };
                    (key, redact(v))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(super) fn sample_of(v: &Value) -> String {
    let mut s = redact(v).to_string();
    if s.chars().count() > SAMPLE_MAX_CHARS {
        s = s.chars().take(SAMPLE_MAX_CHARS).collect::<String>() + "…";
    }
    s
}
