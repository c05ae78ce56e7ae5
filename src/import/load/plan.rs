//! Matching: the target's contacts indexed by phone and email decide, for each client, whether
//! the import creates, links, updates or adopts; and what a dry run would do.

use std::collections::HashMap;

use super::ImportTarget;
use crate::crm::{ContactDraft, ContactRecord};
use crate::import::report::Counts;
use crate::import::{Client, Prepared};
use crate::normalize::{Email, Phone};

/// What the matcher decided for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Create,
    /// Exists and lacks some of our phones or emails.
    Update {
        id: String,
        /// Its name as the target holds it.
        name: String,
        /// Everything it should carry: its own values as typed, then ours.
        phones: Vec<String>,
        emails: Vec<String>,
        /// Ours it lacked.
        new_phones: Vec<String>,
        new_emails: Vec<String>,
    },
    /// Exists with everything we have (or everything it can hold).
    Link {
        id: String,
    },
    /// Created by an earlier start of this same run (it carries the run tag).
    Adopt {
        id: String,
    },
    /// Updated by an earlier attempt whose answer was never stored: it has everything now.
    Completed {
        id: String,
    },
}

impl Plan {
    /// The decision for a row an earlier attempt was writing when it stopped (`action` is
    /// `sending` for a create, `updating` for an update). A contact found for a create in a
    /// target that does not mark its contacts is that create's work; a contact that now
    /// holds everything after an update is that update's.
    pub(super) fn resumed(self, action: &str, marks_own: bool) -> Plan {
        match (self, action) {
            (Plan::Update { id, .. } | Plan::Link { id }, "sending") if !marks_own => {
                Plan::Adopt { id }
            }
            (Plan::Link { id }, "updating") => Plan::Completed { id },
            (other, _) => other,
        }
    }
}

/// The target's contacts, indexed by normalised phone and email.
pub struct Index {
    records: Vec<ContactRecord>,
    by_phone: HashMap<Phone, usize>,
    by_email: HashMap<String, usize>,
    single_valued: bool,
}

impl Index {
    pub fn new(records: Vec<ContactRecord>) -> Index {
        let mut by_phone = HashMap::new();
        let mut by_email = HashMap::new();
        // Oldest first, so among duplicates already in the CRM the same one is picked.
        let mut records = records;
        records.sort_by_key(|r| (r.id.parse::<i64>().unwrap_or(i64::MAX), r.id.clone()));
        records.dedup_by(|a, b| a.id == b.id);
        for (i, r) in records.iter().enumerate() {
            for p in r.phones.iter().filter_map(|p| Phone::parse(p).ok()) {
                by_phone.entry(p).or_insert(i);
            }
            for e in r.emails.iter().filter_map(|e| Email::parse_ascii(e).ok()) {
                by_email.entry(e.as_str().to_lowercase()).or_insert(i);
            }
        }
        Index {
            records,
            by_phone,
            by_email,
            single_valued: false,
        }
    }

    /// For targets whose contacts hold one phone and one email: ours are added only where the
    /// contact has none.
    pub fn single_valued(mut self, on: bool) -> Index {
        self.single_valued = on;
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Update or link when the client is there by any phone, then any email.
    pub fn plan(&self, client: &Client, run_tag: &str) -> Plan {
        let hit = client
            .phones
            .iter()
            .find_map(|p| self.by_phone.get(p))
            .or_else(|| {
                client
                    .emails
                    .iter()
                    .find_map(|e| self.by_email.get(&e.as_str().to_lowercase()))
            });
        let Some(&i) = hit else {
            return Plan::Create;
        };
        let record = &self.records[i];
        let id = record.id.clone();
        if !run_tag.is_empty() && record.tags.iter().any(|t| t == run_tag) {
            return Plan::Adopt { id };
        }
        let room = |held: usize| {
            if self.single_valued {
                1usize.saturating_sub(held)
            } else {
                usize::MAX
            }
        };
        let have: Vec<Phone> = record
            .phones
            .iter()
            .filter_map(|p| Phone::parse(p).ok())
            .collect();
        let new_phones: Vec<String> = client
            .phones
            .iter()
            .filter(|p| !have.contains(p))
            .take(room(record.phones.len()))
            .map(|p| p.to_string())
            .collect();
        let have: Vec<String> = record.emails.iter().map(|e| e.to_lowercase()).collect();
        let new_emails: Vec<String> = client
            .emails
            .iter()
            .filter(|e| !have.contains(&e.as_str().to_lowercase()))
            .take(room(record.emails.len()))
            .map(|e| e.to_string())
            .collect();
        if new_phones.is_empty() && new_emails.is_empty() {
            return Plan::Link { id };
        }
        Plan::Update {
            id,
            name: record.name.clone(),
            phones: record.phones.iter().chain(&new_phones).cloned().collect(),
            emails: record.emails.iter().chain(&new_emails).cloned().collect(),
            new_phones,
            new_emails,
        }
    }
}

/// The tag contacts created by a run carry.
pub fn run_tag(digest: &str) -> String {
    format!("zapis-import-{}", &digest[..digest.len().min(12)])
}

pub(super) fn draft(client: &Client, tag: &str) -> ContactDraft {
    ContactDraft {
        name: client.name.clone(),
        phones: client.phones.iter().map(|p| p.to_string()).collect(),
        emails: client.emails.iter().map(|e| e.to_string()).collect(),
        birthday: client.birthday,
        comment: client.comment.clone(),
        tag: Some(tag.to_string()),
        external_key: Some(client.key.clone()),
    }
}

/// Counts for `--dry-run`: what a real run would do, with nothing written anywhere.
pub fn dry_run_counts(prepared: &Prepared, index: &Index, target: &dyn ImportTarget) -> Counts {
    let mut counts = base_counts(prepared);
    for c in &prepared.clients {
        match index.plan(c, "") {
            Plan::Create if target.cannot_create(c).is_some() => counts.failed += 1,
            Plan::Create => counts.created += 1,
            Plan::Update { .. } => counts.updated += 1,
            Plan::Completed { .. } => counts.updated += 1,
            Plan::Link { .. } | Plan::Adopt { .. } => counts.skipped += 1,
        }
    }
    counts
}

pub(super) fn base_counts(prepared: &Prepared) -> Counts {
    Counts {
        read: prepared.read,
        valid: prepared.valid,
        invalid: prepared.invalid,
        merged: prepared.merged,
        clients: prepared.clients.len(),
        ..Counts::default()
    }
}
