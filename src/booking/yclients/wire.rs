//! The private JSON shapes YClients answers with.

use super::*;

// ---------------------------------------------------------------------------------------------
// Wire types (private)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct WireCompany {
    #[serde(default)]
    pub(super) id: Value,
    #[serde(default)]
    pub(super) title: Value,
    #[serde(default)]
    pub(super) timezone_name: Option<String>,
    #[serde(default)]
    pub(super) address: Value,
    #[serde(default)]
    pub(super) phone_confirmation: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireBookServices {
    #[serde(default)]
    pub(super) services: Vec<WireService>,
    /// The documented key is `categories`; both doc samples and live code use `category`.
    #[serde(default, alias = "categories")]
    pub(super) category: Vec<WireCategory>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireService {
    pub(super) id: Value,
    #[serde(default)]
    pub(super) title: Value,
    #[serde(default)]
    pub(super) category_id: Value,
    #[serde(default)]
    pub(super) price_min: Value,
    #[serde(default)]
    pub(super) price_max: Value,
    /// The salon's description of the service; may hold HTML from the YClients editor.
    #[serde(default)]
    pub(super) comment: Value,
    /// Present only when the request named a master.
    #[serde(default)]
    pub(super) seance_length: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCategory {
    pub(super) id: Value,
    #[serde(default)]
    pub(super) title: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireStaff {
    pub(super) id: Value,
    #[serde(default)]
    pub(super) name: Value,
    #[serde(default)]
    pub(super) specialization: Value,
    #[serde(default)]
    pub(super) bookable: Value,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireDates {
    #[serde(default)]
    pub(super) booking_dates: Vec<Value>,
    /// Month → day numbers (strings in the docs, numbers at Altegio), year implied.
    #[serde(default)]
    pub(super) booking_days: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireTime {
    #[serde(default)]
    pub(super) time: Option<String>,
    #[serde(default)]
    pub(super) seance_length: Value,
    #[serde(default)]
    pub(super) datetime: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCreated {
    #[serde(default)]
    pub(super) record_id: Value,
    #[serde(default)]
    pub(super) record_hash: Value,
}

/// The record object of `GET /record`, `GET /book_record`, `PUT /book_record` and webhooks.
#[derive(Debug, Deserialize)]
pub(super) struct WireRecord {
    #[serde(default)]
    pub(super) id: Value,
    #[serde(default)]
    pub(super) staff_id: Value,
    #[serde(default)]
    pub(super) staff: Value,
    #[serde(default)]
    pub(super) services: Vec<WireRecordService>,
    #[serde(default)]
    pub(super) datetime: Value,
    #[serde(default)]
    pub(super) date: Value,
    #[serde(default)]
    pub(super) seance_length: Value,
    #[serde(default)]
    pub(super) length: Value,
    #[serde(default)]
    pub(super) deleted: Value,
    #[serde(default)]
    pub(super) attendance: Value,
    #[serde(default)]
    pub(super) last_change_date: Value,
    #[serde(default)]
    pub(super) api_id: Value,
    #[serde(default)]
    pub(super) client: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRecordService {
    #[serde(default)]
    pub(super) id: Value,
    #[serde(default)]
    pub(super) title: Value,
    #[serde(default)]
    pub(super) cost: Value,
}

impl WireRecord {
    pub(super) fn staff_id(&self) -> Option<String> {
        id_of(&self.staff_id).or_else(|| id_of(self.staff.get("id").unwrap_or(&Value::Null)))
    }

    pub(super) fn start(&self, tz: Tz) -> Option<DateTime<Utc>> {
        parse_instant(&self.datetime, tz).or_else(|| parse_instant(&self.date, tz))
    }

    pub(super) fn seconds(&self) -> i64 {
        i64_of(&self.seance_length)
            .or_else(|| i64_of(&self.length))
            .unwrap_or(DEFAULT_SEANCE_SECONDS)
    }

    pub(super) fn status(&self) -> RecordStatus {
        record_status(bool_of(&self.deleted), i64_of(&self.attendance))
    }

    pub(super) fn to_record(&self, external_id: String, tz: Tz) -> Result<Record, BookingError> {
        let start = self
            .start(tz)
            .ok_or_else(|| BookingError::rejected("the record has no readable start"))?;
        Ok(Record {
            external_id: RecordId::parse(&external_id)?,
            // All of a visit's services, joined as our booking of them holds them.
            service_id: self
                .services
                .iter()
                .filter_map(|s| id_of(&s.id))
                .collect::<Vec<_>>()
                .join(&crate::domain::SERVICES_JOIN.to_string()),
            master_id: self.staff_id().unwrap_or_default(),
            start,
            duration_min: minutes_of(self.seconds()),
            status: self.status(),
        })
    }
}

/// `deleted` wins; then attendance per the docs: 2 confirmed, 1 came, 0 waiting, −1 no-show.
pub(super) fn record_status(deleted: bool, attendance: Option<i64>) -> RecordStatus {
    if deleted {
        return RecordStatus::Cancelled;
    }
    match attendance {
        Some(1) => RecordStatus::Visited,
        Some(-1) => RecordStatus::NoShow,
        _ => RecordStatus::Active,
    }
}
