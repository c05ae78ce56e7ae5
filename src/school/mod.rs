//! Schools: landing applications and bot enrolments become students in AlfaCRM, in the
//! course's group with a start date; a GetCourse payment opens the course and marks the
//! student. Every write goes through the durable sync engine (see `jobs`).

pub mod alfacrm;
pub mod applications;
pub mod config;
pub mod getcourse;
pub mod inbox;
pub mod jobs;

use crate::domain::System;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::connectors::Failure;
use crate::normalize::{Email, Phone};
use crate::sync::DeliveryError;

/// The system name AlfaCRM jobs are queued under.
pub const ALFACRM: System = System::AlfaCrm;
/// The system name GetCourse jobs are queued under.
pub const GETCOURSE: System = System::GetCourse;

/// A school CRM's answer we cannot use: its refusal of our data field by field, or a
/// [`Failure`] with the retry decision for everything else.
#[derive(Debug, thiserror::Error)]
pub enum SchoolError {
    /// The vendor refused the data; the fields say why.
    #[error("{message}: {}", fields.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Rejected {
        message: String,
        fields: Vec<(String, String)>,
    },
    #[error("{0}")]
    Failed(Failure),
}

impl SchoolError {
    pub fn status(&self) -> Option<u16> {
        self.failure().and_then(|f| f.status)
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            SchoolError::Failed(f) => Some(f),
            SchoolError::Rejected { .. } => None,
        }
    }

    pub(crate) fn transient(message: impl Into<String>) -> SchoolError {
        SchoolError::Failed(Failure::transient(message))
    }

    pub(crate) fn permanent(message: impl Into<String>) -> SchoolError {
        SchoolError::Failed(Failure::permanent(message))
    }

    pub(crate) fn auth(message: impl Into<String>) -> SchoolError {
        SchoolError::Failed(Failure::auth(message))
    }
}

impl From<Failure> for SchoolError {
    fn from(f: Failure) -> SchoolError {
        SchoolError::Failed(f)
    }
}

/// A refusal of our data will be refused again: permanent, with the vendor's words.
impl From<SchoolError> for DeliveryError {
    fn from(e: SchoolError) -> DeliveryError {
        match e {
            SchoolError::Failed(f) => f.into(),
            rejected @ SchoolError::Rejected { .. } => {
                Failure::permanent(rejected.to_string()).into()
            }
        }
    }
}

/// A customer (lead or student) as AlfaCRM returns it; only what we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "strings")]
    pub phone: Vec<String>,
    #[serde(default, deserialize_with = "strings")]
    pub email: Vec<String>,
    #[serde(default, deserialize_with = "flag")]
    pub is_study: bool,
}

impl Customer {
    /// Whether any phone as typed in the CRM is this number.
    pub fn has_phone(&self, phone: &Phone) -> bool {
        self.phone
            .iter()
            .any(|typed| Phone::parse(typed).is_ok_and(|p| &p == phone))
    }

    pub fn has_email(&self, email: &str) -> bool {
        self.email
            .iter()
            .any(|e| e.trim().eq_ignore_ascii_case(email))
    }
}

/// A study group; `b_date` is when it starts.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "date")]
    pub b_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "date")]
    pub e_date: Option<NaiveDate>,
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub name: String,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub is_study: bool,
    pub lead_status_id: Option<i64>,
    pub lead_source_id: Option<i64>,
    pub assigned_id: Option<i64>,
    pub study_status_id: Option<i64>,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub customer_id: i64,
    pub assigned_id: Option<i64>,
    pub title: String,
    pub text: String,
    pub due: NaiveDate,
}

#[derive(Debug, Clone)]
pub struct NewPayment {
    pub customer_id: i64,
    pub date: NaiveDate,
    /// Roubles as AlfaCRM takes them (a number with kopecks).
    pub amount: f64,
    pub payer_name: String,
    pub note: String,
}

/// The school's accounting CRM, as the jobs and the bot use it. AlfaCRM is the one we ship.
#[async_trait]
pub trait SchoolCrm: Send + Sync {
    async fn find_customer(
        &self,
        phone: Option<&Phone>,
        email: Option<&str>,
    ) -> Result<Option<Customer>, SchoolError>;
    async fn create_customer(&self, new: &NewCustomer) -> Result<Customer, SchoolError>;
    async fn mark_studying(
        &self,
        customer_id: i64,
        study_status_id: Option<i64>,
    ) -> Result<(), SchoolError>;
    async fn groups(&self) -> Result<Vec<Group>, SchoolError>;
    /// Adds the customer to the group from `start`; already being there is success.
    async fn enrol(
        &self,
        customer_id: i64,
        group_id: i64,
        start: NaiveDate,
    ) -> Result<(), SchoolError>;
    async fn create_task(&self, task: &NewTask) -> Result<i64, SchoolError>;
    async fn create_payment(&self, pay: &NewPayment) -> Result<i64, SchoolError>;
    async fn payments_of(&self, customer_id: i64) -> Result<Vec<Value>, SchoolError>;
}

/// AlfaCRM answers `["+7…"]`, but some records carry a bare string.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
        Value::String(s) if !s.is_empty() => vec![s],
        _ => Vec::new(),
    })
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => s == "1" || s == "true",
        _ => false,
    })
}

/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or `dd.mm.yyyy`: AlfaCRM uses all three.
fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => parse_date(&s),
        _ => None,
    })
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let head = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(head, "%d.%m.%Y"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_match_phones_typed_any_way() {
        let c: Customer = serde_json::from_value(serde_json::json!({
            "id": 5, "name": "Иван", "phone": ["8 (915) 387-81-40", "+79261579095"],
            "email": "IVAN@mail.ru", "is_study": "1"
        }))
        .unwrap();
        assert!(c.has_phone(&Phone::parse("+7 915 387 8140").unwrap()));
        assert!(!c.has_phone(&Phone::parse("+7 915 387 8141").unwrap()));
        assert!(c.has_email("ivan@mail.ru"));
        assert!(c.is_study);
    }

    #[test]
    fn group_dates_come_in_three_shapes() {
        for s in ["2026-12-07", "2026-12-07 10:00:00", "07.12.2026"] {
            assert_eq!(parse_date(s), NaiveDate::from_ymd_opt(2026, 12, 7), "{s}");
        }
        let g: Group =
            serde_json::from_value(serde_json::json!({"id": 1, "name": "A", "b_date": null}))
                .unwrap();
        assert!(g.b_date.is_none());
    }
}
