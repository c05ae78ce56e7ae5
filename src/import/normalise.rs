//! One record at a time: phones to E.164, emails checked (IDN to punycode, typos reported),
//! names tidied, birthdays to dates. Nothing invalid is dropped silently: each rejected value
//! becomes a [`Problem`].

use chrono::{Datelike, NaiveDate};

use super::{Problem, ProblemKind, RawDate, RawRecord};
use crate::normalize::{ContactError, Email, Phone, parse_phones};

/// A record after normalisation, before merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub row: usize,
    pub name: String,
    pub phones: Vec<Phone>,
    pub emails: Vec<Email>,
    pub birthday: Option<NaiveDate>,
    pub comment: Option<String>,
}

/// Normalises one record, reporting what it rejects; `None` when no phone or email is left.
pub fn record(raw: RawRecord, problems: &mut Vec<Problem>) -> Option<Normalised> {
    let row = raw.row;
    let mut report = |kind, value: &str, detail: String| {
        problems.push(Problem {
            row: Some(row),
            kind,
            value: value.to_string(),
            detail,
        })
    };
    let mut phones: Vec<Phone> = Vec::new();
    let mut extensions: Vec<String> = Vec::new();
    for cell in &raw.phones {
        let parsed = parse_phones(cell);
        for entry in parsed.phones {
            if let Some(ext) = &entry.extension {
                extensions.push(format!("{} доб. {ext}", entry.phone));
                report(
                    ProblemKind::Extension,
                    cell,
                    format!("extension {ext} of {} kept in the comment", entry.phone),
                );
            }
            if !phones.contains(&entry.phone) {
                phones.push(entry.phone);
            }
        }
        for e in parsed.errors {
            let (value, reason) = match &e {
                ContactError::PhoneNotANumber(v) => (v.clone(), "no digits"),
                ContactError::PhoneInvalid(v) => (v.clone(), "not a valid number"),
                ContactError::EmailInvalid(v) => (v.clone(), "not a phone"),
            };
            report(ProblemKind::InvalidPhone, &value, reason.to_string());
        }
    }
    let mut emails: Vec<Email> = Vec::new();
    for cell in &raw.emails {
        for piece in cell
            .split([',', ';', ' ', '\n'])
            .filter(|p| !p.trim().is_empty())
        {
            match Email::parse_ascii(piece) {
                Ok(email) => {
                    if let Some(meant) = email.likely_typo() {
                        report(
                            ProblemKind::EmailTypo,
                            piece.trim(),
                            format!("domain looks like a typo of {meant}; loaded as typed"),
                        );
                    }
                    if !emails
                        .iter()
                        .any(|e| e.as_str().eq_ignore_ascii_case(email.as_str()))
                    {
                        emails.push(email);
                    }
                }
                Err(_) => report(
                    ProblemKind::InvalidEmail,
                    piece.trim(),
                    "not an email address".into(),
                ),
            }
        }
    }
    let birthday = match &raw.birthday {
        None => None,
        Some(RawDate::Date(d)) => Some(*d),
        Some(RawDate::Text(t)) if t.trim().is_empty() => None,
        Some(RawDate::Text(t)) => match birthday(t) {
            Ok(d) => d,
            Err(reason) => {
                report(ProblemKind::InvalidBirthday, t.trim(), reason.into());
                None
            }
        },
    };
    let name = name_of(&raw);
    if phones.is_empty() && emails.is_empty() {
        report(
            ProblemKind::NoContact,
            &name,
            "no valid phone or email: not loaded".into(),
        );
        return None;
    }
    let mut comment = raw
        .comment
        .as_deref()
        .map(collapse)
        .filter(|c| !c.is_empty());
    if !extensions.is_empty() {
        let ext = extensions.join(", ");
        comment = Some(match comment {
            Some(c) => format!("{c}; {ext}"),
            None => ext,
        });
    }
    Some(Normalised {
        row,
        name,
        phones,
        emails,
        birthday,
        comment,
    })
}

/// The display name: the full-name column, else last, first and middle names joined.
fn name_of(raw: &RawRecord) -> String {
    let full = raw
        .full_name
        .as_deref()
        .map(person_name)
        .unwrap_or_default();
    if !full.is_empty() {
        return full;
    }
    [&raw.last_name, &raw.first_name, &raw.middle_name]
        .into_iter()
        .flatten()
        .map(|p| person_name(p))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trims, collapses spaces and fixes the case of names typed all in capitals or all in lower
/// case (`ИВАНОВА анна-мария` → `Иванова Анна-Мария`); mixed case is left as typed, since
/// `McDonald` and `деМоне` are deliberate.
pub fn person_name(raw: &str) -> String {
    collapse(raw)
        .split(' ')
        .map(|word| {
            let has_upper = word.chars().any(char::is_uppercase);
            let has_lower = word.chars().any(char::is_lowercase);
            if has_upper && has_lower {
                return word.to_string();
            }
            word.split('-')
                .map(capitalise)
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn capitalise(part: &str) -> String {
    let mut chars = part.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// A birthday as people and programs write it: `12.05.1990`, `12/05/1990`, `1990-05-12`,
/// `12.05.90`, `1990-05-12T00:00:00` (1C). 1C's empty date `0001-01-01` means "none".
pub fn birthday(text: &str) -> Result<Option<NaiveDate>, &'static str> {
    let t = text.trim();
    let t = t.split(['T', ' ']).next().unwrap_or(t);
    if t.starts_with("0001-01-01") {
        return Ok(None);
    }
    // chrono reads "90" as the year 90 with %Y, so two-digit years are told apart first.
    let parts: Vec<&str> = t.split(['.', '/', '-']).collect();
    let two_digit_year = parts.len() == 3 && parts[0].len() <= 2 && parts[2].len() == 2;
    let date = ["%d.%m.%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%Y.%m.%d"]
        .iter()
        .filter(|_| !two_digit_year)
        .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
        .or_else(|| {
            // Two-digit years: a birthday is in the past, so `05` is 2005 and `90` is 1990.
            NaiveDate::parse_from_str(t, "%d.%m.%y").ok().map(|d| {
                if d.year() > chrono::Utc::now().year() {
                    d.with_year(d.year() - 100).unwrap_or(d)
                } else {
                    d
                }
            })
        })
        .ok_or("not a date (expected DD.MM.YYYY or YYYY-MM-DD)")?;
    let year = date.year();
    if !(1900..=chrono::Utc::now().year()).contains(&year) {
        return Err("year out of range");
    }
    Ok(Some(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_sensible_capitals() {
        assert_eq!(person_name("  ИВАНОВА   анна-мария "), "Иванова Анна-Мария");
        assert_eq!(person_name("john McDonald"), "John McDonald");
        assert_eq!(person_name("пётр"), "Пётр");
    }

    #[test]
    fn birthdays_in_common_shapes() {
        let d = NaiveDate::from_ymd_opt(1990, 5, 12);
        for t in [
            "12.05.1990",
            "12/05/1990",
            "1990-05-12",
            "1990-05-12T00:00:00",
            "12.05.90",
        ] {
            assert_eq!(birthday(t), Ok(d), "{t}");
        }
        assert_eq!(birthday("0001-01-01T00:00:00"), Ok(None));
        assert!(birthday("31.02.1990").is_err());
        assert!(birthday("вчера").is_err());
        assert!(birthday("12.05.1890").is_err());
    }
}
