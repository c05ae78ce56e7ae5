//! The systems an import writes into, each behind [`ImportTarget`]: amoCRM (batches of 250) and
//! Bitrix24 (`batch` of 50 commands).

use async_trait::async_trait;

use super::Client;
use super::load::{ImportTarget, Outcomes};
use crate::crm::amocrm::{AmoCrm, CONTACT_BATCH as AMO_BATCH};
use crate::crm::bitrix24::{Bitrix24, CONTACT_BATCH as BITRIX_BATCH};
use crate::crm::{ContactDraft, ContactRecord, ContactUpdate, CrmError};
use crate::normalize::{Email, Phone};

pub struct AmoTarget(pub AmoCrm);

#[async_trait]
impl ImportTarget for AmoTarget {
    fn system(&self) -> &'static str {
        "amocrm"
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

pub struct Bitrix24Target(pub Bitrix24);

#[async_trait]
impl ImportTarget for Bitrix24Target {
    fn system(&self) -> &'static str {
        "bitrix24"
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
