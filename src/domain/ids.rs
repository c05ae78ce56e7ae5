//! Ids that cross the whole crate as types rather than strings, so a business id cannot be
//! passed where a schedule's record id or a system name was meant, and an id from outside is
//! checked once, where it enters (a config file, a URL path segment, a command line), not
//! wherever it is used.
//!
//! They live in the bottom layer (beside the nouns they name) because the store and the queue
//! carry them on every row; the tenant registry above re-uses them.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an id type holding an `Arc<str>` with a `parse(&str) -> Result<Self, $err>` shares:
/// parsing from strings and serde (through `parse`, so nothing unchecked gets in), read-only
/// string access (`Deref`, `AsRef`; `Borrow` so maps keyed by id are looked up with a `&str`),
/// comparison with strings, and `Display` that pads like a `str` does (listings such as
/// `zapis queue` and `zapis business list` align ids in `{:<16}` columns).
macro_rules! string_id {
    ($id:ident, $err:ident) => {
        impl FromStr for $id {
            type Err = $err;
            fn from_str(s: &str) -> Result<$id, $err> {
                $id::parse(s)
            }
        }

        impl TryFrom<String> for $id {
            type Error = $err;
            fn try_from(s: String) -> Result<$id, $err> {
                $id::parse(&s)
            }
        }

        impl TryFrom<&str> for $id {
            type Error = $err;
            fn try_from(s: &str) -> Result<$id, $err> {
                $id::parse(s)
            }
        }

        impl Deref for $id {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $id {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $id {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl PartialEq<str> for $id {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $id {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl PartialEq<String> for $id {
            fn eq(&self, other: &String) -> bool {
                *self.0 == **other
            }
        }

        impl PartialEq<$id> for str {
            fn eq(&self, other: &$id) -> bool {
                self == &*other.0
            }
        }

        impl PartialEq<$id> for &str {
            fn eq(&self, other: &$id) -> bool {
                *self == &*other.0
            }
        }

        impl PartialEq<$id> for String {
            fn eq(&self, other: &$id) -> bool {
                **self == *other.0
            }
        }

        impl From<$id> for String {
            fn from(id: $id) -> String {
                id.0.to_string()
            }
        }

        impl Serialize for $id {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $id {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$id, D::Error> {
                let s = String::deserialize(d)?;
                $id::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// One deployment may host many businesses; every row carries this id. It is also a path
/// segment of the business's URLs (`/webhooks/<id>/…`, `/console/b/<id>/…`) and, in a
/// deployment of several, the name of its file, so only ids usable there are accepted.
///
/// Cloning is cheap (a shared pointer): the id is copied into every job, task and request.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusinessId(Arc<str>);

/// Why a string cannot name a business.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` cannot be a business id: it {problem}")]
pub struct InvalidBusinessId {
    /// What was given, cut short: it may come from a hostile URL.
    given: String,
    problem: &'static str,
}

impl InvalidBusinessId {
    /// What is wrong with it, as a predicate of "the id": "must be 1 to 64 characters long".
    pub fn problem(&self) -> &'static str {
        self.problem
    }
}

/// The longest id: room for a readable name, short enough for a URL and a file name.
const MAX_LEN: usize = 64;

impl BusinessId {
    /// The id a single-business configuration gets when it names none.
    pub const DEFAULT: &'static str = "default";

    /// `id` if it can name a business: 1 to 64 lower-case latin letters, digits, `-` and `_`.
    pub fn parse(id: &str) -> Result<BusinessId, InvalidBusinessId> {
        match problem_with(id) {
            None => Ok(BusinessId(Arc::from(id))),
            Some(problem) => Err(InvalidBusinessId {
                given: id.chars().take(MAX_LEN + 16).collect(),
                problem,
            }),
        }
    }

    /// The id of a single-business configuration that names none.
    pub fn default_id() -> BusinessId {
        BusinessId(Arc::from(Self::DEFAULT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why `id` cannot name a business, or `None`.
fn problem_with(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > MAX_LEN {
        return Some("must be 1 to 64 characters long");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Some("may hold only lower-case latin letters, digits, `-` and `_`");
    }
    None
}

string_id!(BusinessId, InvalidBusinessId);

/// A booking as the schedule knows it (its record): the id YClients, Dikidi or the demo schedule
/// gave it, which we keep to read, move or cancel it there. The vendor decides its shape (a
/// YClients record number, with `:hash` once it was made through the online widget; a Dikidi
/// number; a generated id in the demo), so the rule only keeps out what no vendor sends and
/// what would corrupt a log line, a link row or a URL: nothing empty, over-long or holding
/// control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(Arc<str>);

/// Why a string cannot be a schedule's record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` cannot be a schedule's record id: it {problem}")]
pub struct InvalidRecordId {
    /// What was given, cut short and with control characters escaped: it came from outside.
    given: String,
    problem: &'static str,
}

impl InvalidRecordId {
    /// What is wrong with it, as a predicate of "the id".
    pub fn problem(&self) -> &'static str {
        self.problem
    }
}

/// The longest record id: far above any vendor's (a number, or a number and a 32-character
/// hash), low enough that a hostile answer cannot fill a row.
const MAX_RECORD_ID_LEN: usize = 128;

impl RecordId {
    /// `id` if a schedule could have given it: 1 to 128 characters, none of them a control
    /// character. Surrounding spaces are kept as given: the vendor's id is what it is.
    pub fn parse(id: &str) -> Result<RecordId, InvalidRecordId> {
        match loose_problem(id) {
            None => Ok(RecordId(Arc::from(id))),
            Some(problem) => Err(InvalidRecordId {
                given: cut_and_escaped(id),
                problem,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why `id` cannot be a record or booking id (empty, over-long, a control character), or
/// `None`.
fn loose_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.chars().count() > MAX_RECORD_ID_LEN {
        Some("must be 1 to 128 characters long")
    } else if id.chars().any(char::is_control) {
        Some("may not hold control characters")
    } else {
        None
    }
}

/// A refused id as an error may show it: it came from outside or from a row written by hand.
fn cut_and_escaped(id: &str) -> String {
    id.chars()
        .take(MAX_RECORD_ID_LEN + 16)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

string_id!(RecordId, InvalidRecordId);

/// A booking as we know it: the id of its `bookings` row, carried by the jobs, dialog buttons
/// and console links that act on it. We make it (32 hex digits), but rows, queued payloads and
/// stored dialog states keep whatever earlier versions wrote (a test's `bk-1`, a lead key
/// standing in for a booking that never was one, see [`crate::domain::lead_key_of`]), so the
/// rule is no stricter than a schedule's record id: 1 to 128 characters, no control character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookingId(Arc<str>);

/// Why a string cannot be one of our booking ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` cannot be a booking id: it {problem}")]
pub struct InvalidBookingId {
    /// What was given, cut short and with control characters escaped: it may come from a
    /// button press or a URL.
    given: String,
    problem: &'static str,
}

impl InvalidBookingId {
    /// What is wrong with it, as a predicate of "the id".
    pub fn problem(&self) -> &'static str {
        self.problem
    }
}

impl BookingId {
    /// `id` if it could name one of our bookings: 1 to 128 characters, no control character.
    pub fn parse(id: &str) -> Result<BookingId, InvalidBookingId> {
        match loose_problem(id) {
            None => Ok(BookingId(Arc::from(id))),
            Some(problem) => Err(InvalidBookingId {
                given: cut_and_escaped(id),
                problem,
            }),
        }
    }

    /// The id of a booking made now: random, 32 lower-case hex digits.
    pub fn generate() -> BookingId {
        BookingId(Arc::from(uuid::Uuid::new_v4().simple().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(BookingId, InvalidBookingId);

/// One of our booking ids written in a test, where a bad one is the test's own mistake.
#[cfg(test)]
pub(crate) fn bk(id: &str) -> BookingId {
    BookingId::parse(id).expect("a test's booking id is valid")
}

/// A schedule's record id written in a test, where a bad one is the test's own mistake.
#[cfg(test)]
pub(crate) fn rec(id: &str) -> RecordId {
    RecordId::parse(id).expect("a test's record id is valid")
}

/// A business id written in a test, where a bad one is the test's own mistake.
#[cfg(test)]
pub(crate) fn bid(id: &str) -> BusinessId {
    BusinessId::parse(id).expect("a test's business id is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_pads_in_a_column_like_a_string() {
        let id = BusinessId::parse("b1").expect("an id");
        assert_eq!(format!("{id:<6}|"), "b1    |");
        assert_eq!(format!("{id}|"), "b1|");
    }

    #[test]
    fn an_id_usable_in_a_url_and_a_file_name_is_accepted_as_given() {
        for id in ["default", "salon-a", "b1", "clinic_2", "a", &"x".repeat(64)] {
            let parsed = BusinessId::parse(id).expect(id);
            assert_eq!(parsed.as_str(), id);
            assert_eq!(parsed.to_string(), id);
            assert_eq!(id.parse::<BusinessId>(), Ok(parsed));
        }
    }

    #[test]
    fn an_id_unusable_in_a_url_is_refused_with_the_reason() {
        let cases = [
            ("", "must be 1 to 64 characters long"),
            (&*"x".repeat(65), "must be 1 to 64 characters long"),
            ("Salon", "may hold only lower-case"),
            ("salon a", "may hold only lower-case"),
            ("../etc", "may hold only lower-case"),
            ("салон", "may hold only lower-case"),
            ("a/b", "may hold only lower-case"),
        ];
        for (id, why) in cases {
            let err = BusinessId::parse(id).expect_err(id);
            assert!(err.problem().starts_with(why), "{id}: {err}");
            assert!(err.to_string().contains("cannot be a business id"), "{err}");
        }
    }

    #[test]
    fn a_hostile_id_is_not_echoed_whole_in_the_error() {
        let long = "A".repeat(10_000);
        let err = BusinessId::parse(&long).expect_err("too long");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn it_is_a_plain_string_in_json_and_a_bad_one_does_not_deserialize() {
        let id = BusinessId::parse("salon-a").expect("valid");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"salon-a\"");
        let back: BusinessId = serde_json::from_str("\"salon-a\"").expect("json");
        assert_eq!(back, id);
        assert!(serde_json::from_str::<BusinessId>("\"Salon A\"").is_err());
    }

    #[test]
    fn a_record_id_is_whatever_a_schedule_sends_that_fits_a_row() {
        // A YClients record, one made through its widget (`id:hash`), a Dikidi record, a demo
        // schedule's generated id.
        for id in [
            "123456789",
            "123456789:0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "987654",
            "3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b",
            &"x".repeat(128),
        ] {
            let parsed = RecordId::parse(id).expect(id);
            assert_eq!(parsed.as_str(), id);
            assert_eq!(parsed.to_string(), id);
            assert_eq!(id.parse::<RecordId>(), Ok(parsed));
        }
    }

    #[test]
    fn a_record_id_no_schedule_would_send_is_refused_with_the_reason() {
        let cases = [
            ("", "must be 1 to 128 characters long"),
            (&*"x".repeat(129), "must be 1 to 128 characters long"),
            ("12\n34", "may not hold control characters"),
            ("12\u{0}", "may not hold control characters"),
            ("\u{1b}[31m", "may not hold control characters"),
        ];
        for (id, why) in cases {
            let err = RecordId::parse(id).expect_err(id);
            assert_eq!(err.problem(), why, "{id:?}");
            assert!(
                err.to_string().contains("cannot be a schedule's record id"),
                "{err}"
            );
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        let err = RecordId::parse(&"A".repeat(10_000)).expect_err("too long");
        assert!(err.to_string().len() < 250, "{err}");
    }

    #[test]
    fn a_record_id_is_a_plain_string_in_json_and_a_bad_one_does_not_deserialize() {
        let id = RecordId::parse("555:abc").expect("valid");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"555:abc\"");
        let back: RecordId = serde_json::from_str("\"555:abc\"").expect("json");
        assert_eq!(back, id);
        assert_eq!(back, "555:abc");
        assert_eq!("555:abc", back.as_str());
        assert!(serde_json::from_str::<RecordId>("\"\"").is_err());
        assert!(serde_json::from_str::<RecordId>("\"a\\u0007\"").is_err());
    }

    #[test]
    fn every_booking_id_we_have_stored_is_accepted_as_given() {
        let lead_key = crate::domain::lead_key_of('u', "chat:42");
        for id in [
            &*BookingId::generate().to_string(),
            "3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b",
            "sb-3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b",
            "bk-1",
            "b1",
            &lead_key,
            &"x".repeat(128),
        ] {
            let parsed = BookingId::parse(id).expect(id);
            assert_eq!(parsed.as_str(), id);
            assert_eq!(id.parse::<BookingId>(), Ok(parsed));
        }
        let made = BookingId::generate();
        assert_eq!(made.len(), 32);
        assert!(
            made.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(made, BookingId::generate());
    }

    #[test]
    fn a_booking_id_that_would_corrupt_a_row_or_a_log_line_is_refused() {
        let cases = [
            ("", "must be 1 to 128 characters long"),
            (&*"x".repeat(129), "must be 1 to 128 characters long"),
            ("bk\n1", "may not hold control characters"),
        ];
        for (id, why) in cases {
            let err = BookingId::parse(id).expect_err(id);
            assert_eq!(err.problem(), why, "{id:?}");
            assert!(err.to_string().contains("cannot be a booking id"), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_booking_id_is_a_plain_string_in_json() {
        let id = BookingId::parse("bk-1").expect("valid");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"bk-1\"");
        let back: BookingId = serde_json::from_str("\"bk-1\"").expect("json");
        assert_eq!(back, id);
        assert!(serde_json::from_str::<BookingId>("\"\"").is_err());
    }

    #[test]
    fn it_compares_with_strings_both_ways() {
        let id = BusinessId::parse("b1").expect("valid");
        assert!(id == "b1");
        assert!("b1" == id);
        let owned = "b1".to_string();
        assert_eq!(id, owned);
        assert_eq!(owned, id);
        assert!(id != "b2");
        let mut map = std::collections::HashMap::new();
        map.insert(id.clone(), 1);
        assert_eq!(map.get("b1"), Some(&1));
    }
}
