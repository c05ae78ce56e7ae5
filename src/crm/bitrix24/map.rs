//! Contacts in and out of a bulk import: the origin key a resumed run recognises, and a
//! portal's contact as an import record.

use super::*;

// -------------------------------------------------------------------- import

/// Contacts an import creates carry `ORIGINATOR_ID = "zapis"` and `ORIGIN_ID = "{run tag}/{key}"`
/// (built-in fields for an external system's id), so a resumed run recognises its own work.
pub(super) fn import_origin(tag: &str, key: &str) -> String {
    format!("{tag}/{key}")
}

/// The items of one list page: `[]`, a list, or PHP's `{}` for nothing.
pub(super) fn page_items(result: Value) -> Vec<Value> {
    match result {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

pub(super) fn import_record(v: Value) -> Option<ContactRecord> {
    let c: ImportContactIn = match serde_json::from_value(v) {
        Ok(c) => c,
        Err(e) => {
            // Skipping a contact could make the import create it again: say so loudly.
            tracing::warn!(error = %e, "unreadable Bitrix24 contact left out of the import's matching");
            return None;
        }
    };
    let id = id_of(&c.id)?;
    let name = [&c.name, &c.last_name]
        .iter()
        .filter_map(|v| v.as_ref().and_then(text_of))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let values = |items: &[MultiIn]| -> Vec<String> {
        items
            .iter()
            .filter_map(|m| m.value.clone())
            .filter(|v| !v.trim().is_empty())
            .collect()
    };
    let originator = c.originator_id.as_ref().and_then(text_of);
    let tags = match (
        originator.as_deref(),
        c.origin_id.as_ref().and_then(text_of),
    ) {
        (Some(ORIGINATOR), Some(origin)) => origin
            .split_once('/')
            .map(|(tag, _)| vec![tag.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Some(ContactRecord {
        id: id.to_string(),
        name,
        phones: values(&c.phone),
        emails: values(&c.email),
        tags,
    })
}

/// Phones as typed, each with its line type: `MOBILE` for a mobile, `WORK` for a landline.
pub(super) fn multi_phones(values: &[String]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"VALUE": v, "VALUE_TYPE": phone_value_type(is_mobile_phone(v))}))
            .collect(),
    )
}

/// E-mails with internationalised domains in Unicode, as people read and type them.
pub(super) fn multi_emails(values: &[String]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"VALUE": unicode_email(v), "VALUE_TYPE": "WORK"}))
            .collect(),
    )
}

pub(super) fn phone_value_type(mobile: bool) -> &'static str {
    if mobile { "MOBILE" } else { "WORK" }
}

impl Bitrix24 {
    pub(super) fn contact_list_params(start: u64) -> Value {
        json!({"order": {"ID": "ASC"}, "select": IMPORT_SELECT, "start": start})
    }

    /// Every contact of the portal, for an import's matching. The first `crm.contact.list`
    /// page says how many there are; the other pages (`start` = 50, 100, …) go up to 50 to a
    /// `batch`, so one request brings up to 2,500 contacts.
    pub async fn import_contacts(&self) -> Result<Vec<ContactRecord>, CrmError> {
        let first = self
            .call("crm.contact.list", Self::contact_list_params(0))
            .await?;
        let mut raw = page_items(first.result);
        match (first.total, first.next) {
            (_, None) => {}
            (Some(total), Some(_)) => {
                let starts: Vec<u64> = (1..).map(|n| n * PAGE).take_while(|s| *s < total).collect();
                for chunk in starts.chunks(BATCH) {
                    let commands: Vec<Command> = chunk
                        .iter()
                        .map(|s| Command {
                            name: format!("page_{s}"),
                            method: "crm.contact.list",
                            params: Self::contact_list_params(*s),
                        })
                        .collect();
                    for page in self.batch_each(&commands).await? {
                        raw.extend(page_items(page?));
                    }
                }
            }
            // No total to plan with: follow `next` one page at a time.
            (None, Some(next)) => {
                let mut params = Self::contact_list_params(next);
                loop {
                    let answer = self.call("crm.contact.list", params.clone()).await?;
                    raw.extend(page_items(answer.result));
                    match answer.next {
                        Some(n) => params["start"] = json!(n),
                        None => break,
                    }
                }
            }
        }
        Ok(raw.into_iter().filter_map(import_record).collect())
    }

    /// Contacts holding any of these phones (in the forms a manager may have typed them) or
    /// emails: `crm.duplicate.findbycomm` with up to 20 values a command, then the hits read
    /// with `crm.contact.list` by `@ID`, all through `batch`.
    pub async fn find_contact_records(
        &self,
        phones: &[Phone],
        emails: &[Email],
    ) -> Result<Vec<ContactRecord>, CrmError> {
        let mut phone_values: Vec<String> = phones.iter().flat_map(phone_variants).collect();
        phone_values.sort();
        phone_values.dedup();
        // Both written forms: ours go out in Unicode, a manager may have typed either.
        let mut email_values: Vec<String> = emails
            .iter()
            .flat_map(|e| [e.as_str().to_string(), e.unicode()])
            .collect();
        email_values.sort();
        email_values.dedup();
        let mut commands = Vec::new();
        for (kind, values) in [("PHONE", &phone_values), ("EMAIL", &email_values)] {
            for (i, part) in values.chunks(MAX_DUPLICATE_VALUES).enumerate() {
                commands.push(Command {
                    name: format!("{}_{i}", kind.to_lowercase()),
                    method: "crm.duplicate.findbycomm",
                    params: json!({"entity_type": "CONTACT", "type": kind, "values": part}),
                });
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for chunk in commands.chunks(BATCH) {
            for found in self.batch_each(chunk).await? {
                // Nothing found is `[]`, found is `{"CONTACT": [ids]}`.
                let found = found?;
                ids.extend(
                    found
                        .get("CONTACT")
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(id_of),
                );
            }
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        let reads: Vec<Command> = ids
            .chunks(PAGE as usize)
            .enumerate()
            .map(|(i, part)| Command {
                name: format!("ids_{i}"),
                method: "crm.contact.list",
                params: json!({"filter": {"@ID": part}, "select": IMPORT_SELECT, "order": {"ID": "ASC"}}),
            })
            .collect();
        let mut records = Vec::new();
        for chunk in reads.chunks(BATCH) {
            for page in self.batch_each(chunk).await? {
                records.extend(page_items(page?).into_iter().filter_map(import_record));
            }
        }
        Ok(records)
    }

    /// Creates up to 50 contacts with one `batch` of `crm.contact.add`: each gets its id or
    /// its own refusal.
    pub async fn add_contacts(
        &self,
        drafts: &[ContactDraft],
    ) -> Result<Vec<Result<String, CrmError>>, CrmError> {
        let mut out = Vec::with_capacity(drafts.len());
        for part in drafts.chunks(BATCH) {
            let commands: Vec<Command> = part
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut fields = json!({
                        "NAME": d.name,
                        "OPENED": "Y",
                        "PHONE": multi_phones(&d.phones),
                        "EMAIL": multi_emails(&d.emails),
                    });
                    if let Some(b) = d.birthday {
                        fields["BIRTHDATE"] = json!(b.format("%Y-%m-%d").to_string());
                    }
                    if let Some(c) = &d.comment {
                        fields["COMMENTS"] = json!(c);
                    }
                    if let (Some(tag), Some(key)) = (&d.tag, &d.external_key) {
                        fields["ORIGINATOR_ID"] = json!(ORIGINATOR);
                        fields["ORIGIN_ID"] = json!(import_origin(tag, key));
                    }
                    if let Some(r) = self.inner.config.responsible_id {
                        fields["ASSIGNED_BY_ID"] = json!(r);
                    }
                    Command {
                        name: format!("add_{i}"),
                        method: "crm.contact.add",
                        // No live-feed entry per imported contact.
                        params: json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
                    }
                })
                .collect();
            for outcome in self.batch_each(&commands).await? {
                out.push(outcome.and_then(|v| {
                    id_of(&v)
                        .map(|id| id.to_string())
                        .ok_or_else(|| CrmError::transient("Bitrix24 crm.contact.add gave no id"))
                }));
            }
        }
        Ok(out)
    }

    /// Adds phones and emails to existing contacts, up to 50 per `batch` of
    /// `crm.contact.update`. Multiple-field values sent without an `ID` are added and the
    /// contact's own values stay as they are, so only the new ones are sent.
    pub async fn append_contact_values(
        &self,
        items: &[ContactUpdate],
    ) -> Result<Vec<Result<(), CrmError>>, CrmError> {
        let mut out = Vec::with_capacity(items.len());
        for part in items.chunks(BATCH) {
            let mut commands = Vec::with_capacity(part.len());
            let mut slots = Vec::with_capacity(part.len());
            for (i, u) in part.iter().enumerate() {
                let id = match entity_id(&u.id) {
                    Ok(id) => id,
                    Err(e) => {
                        slots.push(Some(Err(e)));
                        continue;
                    }
                };
                let mut fields = Map::new();
                if !u.new_phones.is_empty() {
                    fields.insert("PHONE".into(), multi_phones(&u.new_phones));
                }
                if !u.new_emails.is_empty() {
                    fields.insert("EMAIL".into(), multi_emails(&u.new_emails));
                }
                if fields.is_empty() {
                    slots.push(Some(Ok(())));
                    continue;
                }
                commands.push(Command {
                    name: format!("update_{i}"),
                    method: "crm.contact.update",
                    params: json!({"id": id, "fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
                });
                slots.push(None);
            }
            let mut sent = self.batch_each(&commands).await?.into_iter();
            for slot in slots {
                out.push(match slot {
                    Some(done) => done,
                    None => sent
                        .next()
                        .unwrap_or_else(|| {
                            Err(CrmError::transient("Bitrix24 batch lost a command"))
                        })
                        .and_then(|v| match v {
                            Value::Bool(false) => Err(CrmError::permanent(
                                "Bitrix24 crm.contact.update answered false",
                            )),
                            _ => Ok(()),
                        }),
                });
            }
        }
        Ok(out)
    }
}
