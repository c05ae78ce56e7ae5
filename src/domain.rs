//! The nouns of the product, independent of any external system.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::normalize::{Email, Phone};

mod ids;
mod system;

pub use ids::{
    BookingId, BusinessId, InvalidBookingId, InvalidBusinessId, InvalidRecordId, RecordId,
};
#[cfg(test)]
pub(crate) use ids::{bid, bk, rec};
pub use system::{System, UnknownSystem};

/// What the bot sells, and so the words it uses: visits to a master (salon), appointments
/// with a doctor (clinic), or places on courses (school).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BusinessKind {
    #[default]
    Salon,
    Clinic,
    School,
}

/// An amount in kopecks (or cents): integers only, so sums never drift.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Money(pub i64);

impl Money {
    pub fn from_rubles(rubles: i64) -> Money {
        Money(rubles * 100)
    }
    pub fn kopecks(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Money {
    /// `1 500 ₽`, `990,50 ₽`: the way a Russian price list writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written digit by digit: a catalogue screen has a price per service, and each would
        // otherwise build two strings on the way.
        use fmt::Write as _;
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let abs = self.0.unsigned_abs();
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut rest = abs / 100;
        loop {
            digits[n] = b'0' + (rest % 10) as u8;
            n += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            f.write_char(char::from(digits[i]))?;
            if i > 0 && i % 3 == 0 {
                f.write_char('\u{a0}')?;
            }
        }
        match abs % 100 {
            0 => f.write_str("\u{a0}₽"),
            k => write!(f, ",{k:02}\u{a0}₽"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub category: String,
    pub duration_min: u32,
    pub price_min: Money,
    pub price_max: Money,
    /// What the schedule says about the service (YClients' `comment`), as plain text; none
    /// when it says nothing. Dialog states written before it existed read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Joins the ids of the services of one visit into one service id (`"101+102"`). Only a
/// schedule that books several services in one appointment (YClients) is given such an id.
pub const SERVICES_JOIN: char = '+';

impl Service {
    /// One visit of several services, in the order chosen: one id of them all, their names
    /// joined, their lengths and prices added up. Descriptions stay with each service.
    pub fn visit_of(first: &Service, more: &Service) -> Service {
        Service {
            id: format!("{}{SERVICES_JOIN}{}", first.id, more.id),
            name: format!("{} + {}", first.name, more.name),
            category: first.category.clone(),
            duration_min: first.duration_min + more.duration_min,
            price_min: Money(first.price_min.0 + more.price_min.0),
            price_max: Money(first.price_max.0 + more.price_max.0),
            description: None,
        }
    }

    /// The schedule's ids of the services a service id stands for: itself, or each service
    /// of a visit made with [`Service::visit_of`].
    pub fn ids_in(id: &str) -> impl Iterator<Item = &str> {
        id.split(SERVICES_JOIN).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    pub id: String,
    pub name: String,
    pub specialization: String,
}

/// A free interval a client can take: a master, a start instant and its length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub master_id: String,
    pub start: DateTime<Utc>,
    pub duration_min: u32,
}

impl Slot {
    /// Puts slots in the order a client is shown them: by start, then by master.
    pub fn sort(slots: &mut [Slot]) {
        slots.sort_by(|a, b| a.start.cmp(&b.start).then(a.master_id.cmp(&b.master_id)));
    }
}

/// Where a conversation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Telegram,
    Max,
    Console,
    WebForm,
    /// Booked by an admin directly in the schedule.
    Schedule,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Max => "max",
            Channel::Console => "console",
            Channel::WebForm => "web_form",
            Channel::Schedule => "schedule",
        }
    }

    /// The system a message to a chat on this channel is queued under; `None` for the
    /// channels a booking can come from but no message can go back to.
    pub fn system(self) -> Option<System> {
        match self {
            Channel::Telegram => Some(System::Telegram),
            Channel::Max => Some(System::Max),
            Channel::Console => Some(System::Console),
            Channel::WebForm | Channel::Schedule => None,
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Some(match s {
            "telegram" => Channel::Telegram,
            "max" => Channel::Max,
            "console" => Channel::Console,
            "web_form" => Channel::WebForm,
            "schedule" => Channel::Schedule,
            _ => return None,
        })
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self == &Utm::default()
    }
}

/// Where a booking came from, as the marketer needs to see it on the CRM lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub channel: Channel,
    /// The deep-link start payload, verbatim (`src_landing_integrations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The name of a tracked link when the payload was one of ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_name: Option<String>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
}

impl Source {
    pub fn direct(channel: Channel) -> Source {
        Source {
            channel,
            payload: None,
            link_name: None,
            utm: Utm::default(),
        }
    }
}

/// A chat on one messenger: where to reach the client back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatRef {
    pub channel: Channel,
    pub chat_id: String,
}

impl ChatRef {
    pub fn new(channel: Channel, chat_id: impl Into<String>) -> ChatRef {
        ChatRef {
            channel,
            chat_id: chat_id.into(),
        }
    }
    /// One string per chat, used as a key in the store.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel, self.chat_id)
    }

    /// The chat a [`ChatRef::key`] names; `None` for a key of no channel we know.
    pub fn from_key(key: &str) -> Option<ChatRef> {
        let (channel, id) = key.split_once(':')?;
        Some(ChatRef::new(Channel::parse(channel)?, id))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Asked for, not yet confirmed by the schedule (it was unreachable).
    Requested,
    Booked,
    CancelledByClient,
    CancelledByBusiness,
    Visited,
    NoShow,
    /// The schedule refused the request after it was queued (slot gone).
    Failed,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Requested => "requested",
            BookingStatus::Booked => "booked",
            BookingStatus::CancelledByClient => "cancelled_by_client",
            BookingStatus::CancelledByBusiness => "cancelled_by_business",
            BookingStatus::Visited => "visited",
            BookingStatus::NoShow => "no_show",
            BookingStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<BookingStatus> {
        Some(match s {
            "requested" => BookingStatus::Requested,
            "booked" => BookingStatus::Booked,
            "cancelled_by_client" => BookingStatus::CancelledByClient,
            "cancelled_by_business" => BookingStatus::CancelledByBusiness,
            "visited" => BookingStatus::Visited,
            "no_show" => BookingStatus::NoShow,
            "failed" => BookingStatus::Failed,
            _ => return None,
        })
    }

    /// Still expected to happen.
    pub fn is_active(self) -> bool {
        matches!(self, BookingStatus::Requested | BookingStatus::Booked)
    }
}

/// A visit as we hold it: what, who, when, from where, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: BookingId,
    pub business_id: BusinessId,
    pub client_phone: Phone,
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_email: Option<Email>,
    pub service_id: String,
    pub service_name: String,
    pub master_id: String,
    pub master_name: String,
    pub start: DateTime<Utc>,
    pub duration_min: u32,
    pub price: Money,
    pub status: BookingStatus,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatRef>,
    /// The record id in the booking system, once it confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<RecordId>,
    pub created_at: DateTime<Utc>,
}

impl Booking {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(i64::from(self.duration_min))
    }
}

/// The key a lead that is no booking's carries in the CRM where a booking's lead has its
/// booking id: `prefix` and 31 hex digits of the digest of `seed`, 32 characters like a booking
/// id and never equal to one, the same for every retry of one lead. A `String`, not a
/// [`BookingId`]: it names a lead, and is parsed only where it stands in for a booking.
pub fn lead_key_of(prefix: char, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}{}", &hex[..31])
}

/// A client's agreement to the business's personal-data policy (152-ФЗ, art. 9): when it was
/// given and to which text, so a changed text can be told from the one agreed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub at: DateTime<Utc>,
    /// A digest of the consent text shown (and the policy link in it).
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub business_id: BusinessId,
    pub phone: Phone,
    pub name: String,
    pub email: Option<Email>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_as_a_price_list_writes_it() {
        assert_eq!(Money::from_rubles(1500).to_string(), "1\u{a0}500\u{a0}₽");
        assert_eq!(Money(99050).to_string(), "990,50\u{a0}₽");
        assert_eq!(
            Money::from_rubles(1_250_000).to_string(),
            "1\u{a0}250\u{a0}000\u{a0}₽"
        );
        assert_eq!(Money(0).to_string(), "0\u{a0}₽");
        assert_eq!(Money(-150_005).to_string(), "-1\u{a0}500,05\u{a0}₽");
        assert_eq!(Money(99_900).to_string(), "999\u{a0}₽");
        assert_eq!(Money(100_000).to_string(), "1\u{a0}000\u{a0}₽");
        assert_eq!(
            Money(i64::MIN).to_string(),
            "-92\u{a0}233\u{a0}720\u{a0}368\u{a0}547\u{a0}758,08\u{a0}₽"
        );
    }

    #[test]
    fn chat_keys_name_the_channel() {
        assert_eq!(ChatRef::new(Channel::Telegram, "42").key(), "telegram:42");
    }
}
