//! Initial import of a client base (`zapis import FILE --into amocrm|bitrix24|yclients`):
//! read a spreadsheet or a 1C export ([`read`], [`onec`]), normalise phones, emails, names and
//! birthdays ([`normalise`]), fold duplicates into one client each ([`dedup`]), and load the
//! result through the durable sync engine, resumably ([`load`]) into one of the [`targets`];
//! [`report`] prints the counts and writes a CSV with a row per problem. How it behaves is
//! described in docs/import.md.

pub mod dedup;
pub mod load;
pub mod normalise;
pub mod onec;
pub mod read;
pub mod report;
pub mod targets;

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::normalize::{Email, Phone};

/// Every failure that stops an import (problems with single rows are [`Problem`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error("column mapping: {0}")]
    Mapping(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Target(String),
}

/// What a column of the source means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    FullName,
    LastName,
    FirstName,
    MiddleName,
    Phone,
    Email,
    Birthday,
    Comment,
}

impl Field {
    /// The names `--map FIELD=COLUMN` accepts.
    pub fn parse(name: &str) -> Option<Field> {
        Some(match name.trim().to_lowercase().as_str() {
            "name" | "full_name" | "fio" => Field::FullName,
            "last_name" | "surname" => Field::LastName,
            "first_name" => Field::FirstName,
            "middle_name" | "patronymic" => Field::MiddleName,
            "phone" => Field::Phone,
            "email" => Field::Email,
            "birthday" | "birth_date" => Field::Birthday,
            "comment" => Field::Comment,
            _ => return None,
        })
    }
}

/// A birthday as the source holds it: text to parse, or a date a spreadsheet cell already is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawDate {
    Text(String),
    Date(NaiveDate),
}

/// One client record as read, before any normalisation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    /// Where the user finds it: the line of a CSV, the row of a sheet, the number of a 1C
    /// element (1-based).
    pub row: usize,
    pub full_name: Option<String>,
    pub last_name: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    /// Cells that may each hold several numbers.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub birthday: Option<RawDate>,
    pub comment: Option<String>,
}

/// A client after normalisation and merging: what gets written to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The idempotency key: `phone:+7…` of the first number, else `email:…`.
    pub key: String,
    pub name: String,
    pub phones: Vec<Phone>,
    pub emails: Vec<Email>,
    pub birthday: Option<NaiveDate>,
    pub comment: Option<String>,
    /// Source rows merged into this client.
    pub rows: Vec<usize>,
}

/// What was wrong with one row or one merge; a row of the problem report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ProblemKind {
    InvalidPhone,
    InvalidEmail,
    EmailTypo,
    InvalidBirthday,
    /// Neither a valid phone nor a valid email: the row is not loaded.
    NoContact,
    /// An extension (`доб. 123`) that E.164 cannot hold, kept in the comment.
    Extension,
    /// The row was folded into another client with the same phone or email.
    Merged,
    /// Merged rows disagreed on a field; the report says which value was kept.
    Conflict,
    /// The target refused the client.
    WriteFailed,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::InvalidPhone => "invalid_phone",
            ProblemKind::InvalidEmail => "invalid_email",
            ProblemKind::EmailTypo => "email_typo",
            ProblemKind::InvalidBirthday => "invalid_birthday",
            ProblemKind::NoContact => "no_contact",
            ProblemKind::Extension => "extension",
            ProblemKind::Merged => "merged",
            ProblemKind::Conflict => "conflict",
            ProblemKind::WriteFailed => "write_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub row: Option<usize>,
    pub kind: ProblemKind,
    /// The offending value as read.
    pub value: String,
    pub detail: String,
}

/// The result of reading, normalising and deduplicating a file.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub clients: Vec<Client>,
    pub problems: Vec<Problem>,
    /// Records read.
    pub read: usize,
    /// Records with at least one valid phone or email.
    pub valid: usize,
    /// Records with neither.
    pub invalid: usize,
    /// Records folded into another client.
    pub merged: usize,
}

/// An explicit `--map FIELD=COLUMN`: the column by its header text or 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOverride {
    pub field: Field,
    pub column: String,
}

/// What identifies an import run across restarts: the file's bytes and the column overrides,
/// hashed with SHA-256 over an explicit rendering of the overrides. (Earlier builds hashed the
/// overrides' `Debug` text, which no release promises to keep; without `--map` that text was
/// `[]`, and the same bytes are hashed here, so such runs resume. A run started with `--map`
/// by an earlier build starts afresh, and its clients already in the target are found by
/// phone or e-mail rather than created again.)
pub fn run_digest(file: &[u8], overrides: &[MapOverride]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(file);
    if overrides.is_empty() {
        hasher.update(b"[]");
    } else {
        hasher.update(b"map-v2");
        for o in overrides {
            let field = serde_json::to_string(&o.field).unwrap_or_default();
            hasher.update(format!("\n{field}={}", o.column).as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl std::str::FromStr for MapOverride {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (field, column) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected FIELD=COLUMN"))?;
        let field = Field::parse(field).ok_or_else(|| {
            format!(
                "{field:?} is not a field; use name, last_name, first_name, middle_name, phone, \
                 email, birthday or comment"
            )
        })?;
        Ok(MapOverride {
            field,
            column: column.trim().to_string(),
        })
    }
}

/// Reads any supported file: XLSX by its zip signature, 1C XML by `<`, OData JSON by `{`/`[`,
/// everything else as CSV.
pub fn read_records(path: &Path, overrides: &[MapOverride]) -> Result<Vec<RawRecord>, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read_bytes(&bytes, overrides)
}

pub fn read_bytes(bytes: &[u8], overrides: &[MapOverride]) -> Result<Vec<RawRecord>, ImportError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read::xlsx(bytes, overrides);
    }
    let head = skip_bom_and_space(bytes);
    match head.first() {
        Some(b'<') => onec::commerceml(bytes),
        Some(b'{') | Some(b'[') => onec::odata_json(bytes),
        _ => read::csv(bytes, overrides),
    }
}

fn skip_bom_and_space(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

/// Normalises and deduplicates records: the whole pure part of an import.
pub fn prepare(records: Vec<RawRecord>) -> Prepared {
    let read = records.len();
    let mut problems = Vec::new();
    let mut normalised = Vec::with_capacity(records.len());
    let mut invalid = 0;
    for record in records {
        match normalise::record(record, &mut problems) {
            Some(n) => normalised.push(n),
            None => invalid += 1,
        }
    }
    let valid = normalised.len();
    let clients = dedup::merge(normalised, &mut problems);
    let merged = valid - clients.len();
    problems.sort_by_key(|p| (p.row.unwrap_or(usize::MAX), p.kind));
    Prepared {
        clients,
        problems,
        read,
        valid,
        invalid,
        merged,
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn a_run_without_overrides_keeps_the_digest_earlier_builds_gave_it() {
        // SHA-256 of the file followed by `[]`, as earlier builds computed it.
        assert_eq!(
            run_digest(b"phone\n+79123456789\n", &[]),
            "63d8a1f67fee406c3a7664aa55c441c52078413f983c63cd72b8d1c610727bc7"
        );
        let map: Vec<MapOverride> = vec!["phone=Тел".parse().unwrap()];
        let other: Vec<MapOverride> = vec!["email=Тел".parse().unwrap()];
        assert_ne!(run_digest(b"x", &map), run_digest(b"x", &other));
        assert_eq!(run_digest(b"x", &map), run_digest(b"x", &map.clone()));
    }
}
