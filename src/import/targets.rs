//! The systems an import writes into, each behind [`ImportTarget`]: amoCRM (batches of 250),
//! Bitrix24 (`batch` of 50 commands) and YClients (one client card per request).

use crate::domain::System;
use async_trait::async_trait;

use super::Client;
use super::load::{ImportTarget, Outcomes};
use crate::booking::BookingError;
use crate::booking::yclients::{NewClient, SalonClient, Yclients};
use crate::connectors::Failure;
use crate::crm::amocrm::{AmoCrm, CONTACT_BATCH as AMO_BATCH};
use crate::crm::bitrix24::{Bitrix24, CONTACT_BATCH as BITRIX_BATCH};
use crate::crm::{ContactDraft, ContactRecord, ContactUpdate, CrmError};
use crate::normalize::{Email, Phone};

pub struct AmoTarget(pub AmoCrm);

#[async_trait]
impl ImportTarget for AmoTarget {
    fn system(&self) -> System {
        System::AmoCrm
    }
    fn batch_size(&self) -> usize {
        AMO_BATCH
    }
    async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError> {
        let mut all = Vec::new();
        for page in 1.. {
            let (records, more) = self.0.contacts_page(page).await?;
            all.extend(records);
            if !more {
                break;
            }
        }
        Ok(all)
    }
    async fn search(&self, clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError> {
        let mut found = Vec::new();
        for client in clients {
            for p in &client.phones {
                // amoCRM stores phones as typed: search by the last ten digits.
                let digits: String = p.as_str().chars().filter(char::is_ascii_digit).collect();
                let tail = &digits[digits.len().saturating_sub(10)..];
                found.extend(self.0.search_contact_records(tail).await?);
            }
            for e in &client.emails {
                found.extend(self.0.search_contact_records(e.as_str()).await?);
            }
        }
        Ok(found)
    }
    async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError> {
        // One request for the whole batch: amoCRM takes or refuses it as a whole.
        Ok(self
            .0
            .add_contacts(drafts)
            .await?
            .into_iter()
            .map(Ok)
            .collect())
    }
    async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError> {
        let drafts: Vec<(String, ContactDraft)> = items
            .iter()
            .map(|u| {
                (
                    u.id.clone(),
                    ContactDraft {
                        name: u.name.clone(),
                        phones: u.phones.clone(),
                        emails: u.emails.clone(),
                        ..ContactDraft::default()
                    },
                )
            })
            .collect();
        self.0.update_contacts(&drafts).await?;
        Ok(vec![Ok(()); items.len()])
    }
}

/// The last ten digits of a +7 number (all digits of another): how a number is looked up in a
/// system that stores it as typed.
fn national_digits(p: &Phone) -> String {
    let digits: String = p.as_str().chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix('7') {
        Some(national) if digits.len() == 11 => national.to_string(),
        _ => digits,
    }
}

pub struct Bitrix24Target(pub Bitrix24);

#[async_trait]
impl ImportTarget for Bitrix24Target {
    fn system(&self) -> System {
        System::Bitrix24
    }
    fn batch_size(&self) -> usize {
        BITRIX_BATCH
    }
    async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError> {
        self.0.import_contacts().await
    }
    async fn search(&self, clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError> {
        let phones: Vec<Phone> = clients.iter().flat_map(|c| c.phones.clone()).collect();
        let emails: Vec<Email> = clients.iter().flat_map(|c| c.emails.clone()).collect();
        self.0.find_contact_records(&phones, &emails).await
    }
    async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError> {
        self.0.add_contacts(drafts).await
    }
    async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError> {
        self.0.append_contact_values(items).await
    }
}

/// The published YClients ceiling per minute, honoured alongside 5 a second.
pub const YCLIENTS_PER_MINUTE: u32 = 200;

/// YClients client cards through the admin API (user token): one card per request, one phone
/// and one email per card. Cards carry no mark of ours, so a card found for a client whose
/// create was in flight is taken as that create's.
pub struct YclientsTarget(Yclients);

impl YclientsTarget {
    /// Fails without a user token: client cards are admin methods.
    pub fn new(client: Yclients) -> Result<YclientsTarget, String> {
        if !client.has_user_token() {
            return Err("importing into YClients needs booking.yclients.user_token \
                        (client cards are admin methods; get the token with POST /auth)"
                .into());
        }
        Ok(YclientsTarget(
            client.with_minute_limit(YCLIENTS_PER_MINUTE),
        ))
    }
}

fn booking_to_crm(e: BookingError) -> CrmError {
    match e {
        BookingError::Failed(f) if f.is_auth() => CrmError::from(Failure {
            message: format!(
                "{}; check booking.yclients.partner_token and user_token",
                f.message
            ),
            ..f
        }),
        BookingError::Failed(f) => CrmError::from(f),
        other => CrmError::permanent(other.to_string()),
    }
}

fn record_of(c: SalonClient) -> ContactRecord {
    ContactRecord {
        id: c.id,
        name: c.name,
        phones: c.phone.into_iter().collect(),
        emails: c.email.into_iter().collect(),
        tags: Vec::new(),
    }
}

/// `+79123456789` → `79123456789`: how YClients takes a phone.
fn wire_phone(p: &str) -> String {
    p.chars().filter(char::is_ascii_digit).collect()
}

/// The card for a draft. A card holds one phone and one email: the others are kept in the
/// comment rather than lost.
fn new_client(d: &ContactDraft) -> Result<NewClient, CrmError> {
    let Some(phone) = d.phones.first() else {
        return Err(CrmError::permanent(
            "YClients needs a phone for a new client card",
        ));
    };
    let extra: Vec<&str> = d
        .phones
        .iter()
        .skip(1)
        .chain(d.emails.iter().skip(1))
        .map(String::as_str)
        .collect();
    let comment = match (&d.comment, extra.is_empty()) {
        (c, true) => c.clone(),
        (None, false) => Some(format!("Также: {}", extra.join(", "))),
        (Some(c), false) => Some(format!("{c}; также: {}", extra.join(", "))),
    };
    Ok(NewClient {
        name: d.name.clone(),
        phone: wire_phone(phone),
        email: d.emails.first().cloned(),
        birth_date: d.birthday,
        comment,
    })
}

#[async_trait]
impl ImportTarget for YclientsTarget {
    fn system(&self) -> System {
        System::Yclients
    }
    /// A job is 20 cards: about six seconds of requests at 3.2 a second.
    fn batch_size(&self) -> usize {
        20
    }
    fn write_batch(&self) -> usize {
        1
    }
    fn single_valued(&self) -> bool {
        true
    }
    fn marks_own(&self) -> bool {
        false
    }
    fn cannot_create(&self, client: &Client) -> Option<String> {
        client.phones.is_empty().then(|| {
            "YClients needs a phone for a new client card; this client has only an email".into()
        })
    }
    async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError> {
        Ok(self
            .0
            .all_clients()
            .await
            .map_err(booking_to_crm)?
            .into_iter()
            .map(record_of)
            .collect())
    }
    async fn search(&self, clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError> {
        let mut found = Vec::new();
        for client in clients {
            let texts = client
                .phones
                .iter()
                .map(national_digits)
                .chain(client.emails.iter().map(|e| e.as_str().to_string()));
            for text in texts {
                let hits = self
                    .0
                    .quick_search_clients(&text)
                    .await
                    .map_err(booking_to_crm)?;
                found.extend(hits.into_iter().map(record_of));
            }
        }
        Ok(found)
    }
    async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError> {
        let mut out = Vec::with_capacity(drafts.len());
        for d in drafts {
            let card = match new_client(d) {
                Ok(c) => c,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            match self.0.create_client(&card).await {
                Ok(id) => out.push(Ok(id)),
                Err(e) if e.is_transient() => return Err(booking_to_crm(e)),
                Err(e) => out.push(Err(booking_to_crm(e))),
            }
        }
        Ok(out)
    }
    async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError> {
        let mut out = Vec::with_capacity(items.len());
        for u in items {
            let phone = u.new_phones.first().map(|p| wire_phone(p));
            let email = u.new_emails.first().map(String::as_str);
            match self.0.complete_client(&u.id, phone.as_deref(), email).await {
                Ok(()) => out.push(Ok(())),
                Err(e) if e.is_transient() => return Err(booking_to_crm(e)),
                Err(e) => out.push(Err(booking_to_crm(e))),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_digits_drop_only_the_russian_code() {
        assert_eq!(
            national_digits(&Phone::parse("+79123456789").unwrap()),
            "9123456789"
        );
        assert_eq!(
            national_digits(&Phone::parse("+375291234567").unwrap()),
            "375291234567"
        );
    }

    #[test]
    fn a_yclients_card_keeps_the_values_it_cannot_hold_in_its_comment() {
        let card = new_client(&ContactDraft {
            name: "Петров Петр".into(),
            phones: vec!["+79161234567".into(), "+74951234567".into()],
            emails: vec!["p@mail.ru".into(), "q@mail.ru".into()],
            comment: Some("+74951234567 доб. 12".into()),
            ..ContactDraft::default()
        })
        .unwrap();
        assert_eq!(card.phone, "79161234567");
        assert_eq!(card.email.as_deref(), Some("p@mail.ru"));
        assert_eq!(
            card.comment.as_deref(),
            Some("+74951234567 доб. 12; также: +74951234567, q@mail.ru")
        );
        let no_phone = new_client(&ContactDraft {
            name: "Олег".into(),
            emails: vec!["oleg@bk.ru".into()],
            ..ContactDraft::default()
        });
        assert!(no_phone.unwrap_err().is_permanent());
    }
}
