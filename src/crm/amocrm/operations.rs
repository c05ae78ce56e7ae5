//! The CRM steps as amoCRM calls: contacts by phone, leads tagged and keyed by booking, notes,
//! tasks, the booking field, and the bulk calls an import uses.

use super::*;

impl AmoCrm {
    // ---------------------------------------------------------------- contacts

    pub(super) async fn find_contact(
        &self,
        phone: &Phone,
        email: Option<&Email>,
    ) -> Result<Option<i64>, CrmError> {
        // The CRM keeps phones as typed ("8 912 …", "+7 (912) …"); search by the national
        // digits, then compare each hit's phones after normalising them ourselves.
        let digits: String = phone
            .as_str()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let tail: String = digits
            .chars()
            .skip(digits.len().saturating_sub(10))
            .collect();
        // An erased client's phone searches nothing: an empty query lists every contact.
        let by_phone = if phone.is_erased() {
            Vec::new()
        } else {
            self.search_contacts(&tail).await?
        };
        for contact in by_phone {
            if contact.phones().any(|p| &p == phone) {
                tracing::debug!(contact_id = contact.id, phone = %phone.masked(), "amoCRM contact found by phone");
                return Ok(Some(contact.id));
            }
        }
        if let Some(email) = email {
            // Searched as it is stored (Unicode), compared in one form whichever way it was typed.
            let wanted = Email::parse_ascii(email.as_str()).ok();
            for contact in self.search_contacts(&email.unicode()).await? {
                if contact
                    .emails()
                    .any(|e| &e == email || Email::parse_ascii(e.as_str()).ok() == wanted)
                {
                    tracing::debug!(contact_id = contact.id, email = %email.masked(), "amoCRM contact found by email");
                    return Ok(Some(contact.id));
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn search_contacts(&self, query: &str) -> Result<Vec<ContactIn>, CrmError> {
        let page = self
            .get(
                "/api/v4/contacts",
                &[("query", query.to_string()), ("limit", "250".into())],
            )
            .await?;
        let Some(bytes) = page else {
            return Ok(Vec::new());
        };
        let mut contacts = parse_body::<ContactsPage>(&bytes, "contact list")?
            .embedded
            .contacts;
        // Oldest first, so repeated runs pick the same contact among duplicates.
        contacts.sort_by_key(|c| c.id);
        Ok(contacts)
    }

    pub(super) fn contact_out(req: &ContactRequest) -> ContactOut {
        let mut fields = vec![FieldValueOut::code(
            "PHONE",
            req.phone.as_str().to_string(),
            Some(phone_enum(req.phone.is_mobile())),
        )];
        if let Some(email) = &req.email {
            fields.push(FieldValueOut::code("EMAIL", email.unicode(), Some("WORK")));
        }
        ContactOut {
            name: req.name.clone(),
            custom_fields_values: fields,
        }
    }

    // ---------------------------------------------------------------- bulk contacts (import)

    /// One page (250) of the account's contacts, oldest first; `true` when more follow.
    pub async fn contacts_page(&self, page: u32) -> Result<(Vec<ContactRecord>, bool), CrmError> {
        let bytes = self
            .get(
                "/api/v4/contacts",
                &[
                    ("limit", CONTACT_BATCH.to_string()),
                    ("page", page.to_string()),
                    ("order[id]", "asc".into()),
                ],
            )
            .await?;
        let Some(bytes) = bytes else {
            return Ok((Vec::new(), false));
        };
        let page: ContactsPage = parse_body(&bytes, "contact list")?;
        let more = page.links.is_some_and(|l| l.next.is_some());
        Ok((
            page.embedded
                .contacts
                .iter()
                .map(ContactIn::record)
                .collect(),
            more,
        ))
    }

    /// Contacts whose filled fields match `query` (a phone's digits, an email). An e-mail is
    /// searched in Unicode, the form zapis writes.
    pub async fn search_contact_records(
        &self,
        query: &str,
    ) -> Result<Vec<ContactRecord>, CrmError> {
        Ok(self
            .search_contacts(&unicode_email(query))
            .await?
            .iter()
            .map(ContactIn::record)
            .collect())
    }

    pub(super) fn draft_out(draft: &ContactDraft) -> BulkContactOut {
        let mut fields = Vec::new();
        if !draft.phones.is_empty() {
            fields.push(FieldValueOut::many(
                "PHONE",
                draft
                    .phones
                    .iter()
                    .map(|p| (p.clone(), phone_enum(is_mobile_phone(p))))
                    .collect(),
            ));
        }
        if !draft.emails.is_empty() {
            fields.push(FieldValueOut::many(
                "EMAIL",
                draft
                    .emails
                    .iter()
                    .map(|e| (unicode_email(e), "WORK"))
                    .collect(),
            ));
        }
        BulkContactOut {
            id: None,
            name: Some(draft.name.clone()).filter(|n| !n.is_empty()),
            custom_fields_values: fields,
            request_id: None,
            embedded: draft.tag.as_ref().map(|t| BulkEmbeddedOut {
                tags: vec![TagOut { name: t.clone() }],
            }),
        }
    }

    /// Adds up to [`CONTACT_BATCH`] contacts in one request; their ids, in the given order.
    pub async fn add_contacts(&self, drafts: &[ContactDraft]) -> Result<Vec<String>, CrmError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<BulkContactOut> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| BulkContactOut {
                request_id: Some(i.to_string()),
                ..Self::draft_out(d)
            })
            .collect();
        let bytes = self
            .send_json(Method::POST, "/api/v4/contacts", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding contacts"))?;
        let added: AddedPage<ContactsAddedEmbedded> = parse_body(&bytes, "contacts response")?;
        let mut ids = vec![None; drafts.len()];
        for (pos, c) in added.embedded.contacts.iter().enumerate() {
            let slot = c
                .request_id
                .as_deref()
                .and_then(|r| r.parse::<usize>().ok())
                .unwrap_or(pos);
            if let Some(s) = ids.get_mut(slot) {
                *s = Some(c.id.to_string());
            }
        }
        ids.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CrmError::transient("amoCRM added fewer contacts than sent"))
    }

    /// Replaces the phones and emails of up to [`CONTACT_BATCH`] contacts (names stay as the
    /// managers left them).
    pub async fn update_contacts(&self, items: &[(String, ContactDraft)]) -> Result<(), CrmError> {
        if items.is_empty() {
            return Ok(());
        }
        let body = items
            .iter()
            .map(|(id, d)| {
                Ok(BulkContactOut {
                    id: Some(lead_id(id)?),
                    name: None,
                    embedded: None,
                    ..Self::draft_out(d)
                })
            })
            .collect::<Result<Vec<_>, CrmError>>()?;
        self.send_json(Method::PATCH, "/api/v4/contacts", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to updating contacts"))?;
        Ok(())
    }

    // ---------------------------------------------------------------- leads

    pub(super) fn booking_tag(booking_id: &str) -> String {
        // Tags are short labels in the card; 16 characters of a 32-hex id are ample.
        let prefix: String = booking_id.chars().take(16).collect();
        format!("zapis:{prefix}")
    }

    /// The tracking values of a booking that the account has no field for, as
    /// `(utm_source, yandex)` pairs.
    pub(super) fn untracked(
        booking: &Booking,
        tracking: &HashMap<&'static str, i64>,
    ) -> Vec<(String, String)> {
        let utm = &booking.source.utm;
        TRACKING_CODES
            .iter()
            .zip([
                &utm.source,
                &utm.medium,
                &utm.campaign,
                &utm.content,
                &utm.term,
            ])
            .filter(|((code, _), _)| !tracking.contains_key(code))
            .filter_map(|((_, name), value)| value.as_ref().map(|v| (name.to_string(), v.clone())))
            .collect()
    }

    pub(super) fn lead_out(
        &self,
        req: &LeadRequest,
        contact: Option<EmbeddedContact>,
        ctx: &LeadContext,
    ) -> LeadOut {
        let cfg = &self.inner.config;
        let booking = &req.booking;
        let source = &booking.source;
        // The booking id tag is for people reading the card; the search uses the field.
        let mut tags: Vec<String> = vec![
            cfg.bot_tag.clone(),
            format!("{}{}", cfg.channel_tag_prefix, source.channel.as_str()),
            Self::booking_tag(&booking.id),
        ];
        if let Some(campaign) = source.link_name.as_ref().or(source.utm.campaign.as_ref()) {
            tags.push(format!("{}{campaign}", cfg.campaign_tag_prefix));
        }
        let mut fields = vec![FieldValueOut::id(ctx.booking_field, booking.id.to_string())];
        if let Some(payload) = &source.payload {
            match cfg.start_payload_field_id {
                Some(id) => fields.push(FieldValueOut::id(id, payload.clone())),
                None => tags.push(format!("start:{payload}")),
            }
        }
        let utm = &source.utm;
        for ((code, _), value) in TRACKING_CODES.iter().zip([
            &utm.source,
            &utm.medium,
            &utm.campaign,
            &utm.content,
            &utm.term,
        ]) {
            if let (Some(v), Some(id)) = (value, ctx.tracking.get(code)) {
                fields.push(FieldValueOut::id(*id, v.clone()));
            }
        }
        // A value without a field would fail the whole create; it is kept as a tag (and a
        // note, written with the transcript).
        for (name, value) in Self::untracked(booking, &ctx.tracking) {
            tags.push(format!("{name}:{value}"));
        }
        let mut seen = std::collections::HashSet::new();
        let tags = tags
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && seen.insert(t.clone()))
            .map(|name| TagOut { name })
            .collect();
        LeadOut {
            name: req.title(),
            // amoCRM prices are whole units; round kopecks half up.
            price: (booking.price.kopecks() + 50).div_euclid(100),
            pipeline_id: cfg.pipeline_id,
            status_id: cfg.new_status_id,
            responsible_user_id: cfg.responsible_user_id,
            custom_fields_values: fields,
            embedded: LeadEmbeddedOut {
                tags,
                contacts: contact.into_iter().collect(),
            },
            request_id: booking.id.to_string(),
        }
    }

    pub(super) fn lead_matches_booking(lead: &LeadIn, field: i64, booking_id: &str) -> bool {
        lead.custom_fields_values
            .iter()
            .flatten()
            .filter(|f| f.field_id == Some(field))
            .flat_map(|f| f.values.iter())
            .any(|v| v.value.as_str() == Some(booking_id))
    }

    // ---------------------------------------------------------------- account fields

    /// The account's custom fields of leads (`GET /api/v4/leads/custom_fields`, 50 to a page,
    /// `_links.next` while more remain), read once and kept; `reload` reads them again.
    pub async fn lead_fields(&self, reload: bool) -> Result<Arc<Vec<LeadField>>, CrmError> {
        let mut account = self.inner.account.lock().await;
        self.lead_fields_locked(&mut account, reload).await
    }

    pub(super) async fn lead_fields_locked(
        &self,
        account: &mut AccountFields,
        reload: bool,
    ) -> Result<Arc<Vec<LeadField>>, CrmError> {
        if !reload && let Some(fields) = &account.lead_fields {
            return Ok(fields.clone());
        }
        let mut fields = Vec::new();
        let mut page = 1u32;
        loop {
            let bytes = self
                .get(
                    "/api/v4/leads/custom_fields",
                    &[("limit", "50".into()), ("page", page.to_string())],
                )
                .await?;
            let Some(bytes) = bytes else { break };
            let list: FieldsPage = parse_body(&bytes, "lead field list")?;
            fields.extend(list.embedded.custom_fields.into_iter().map(|f| LeadField {
                id: f.id,
                name: f.name.unwrap_or_default(),
                code: f.code.filter(|c| !c.is_empty()),
                field_type: f.field_type.unwrap_or_default(),
            }));
            if list.links.is_none_or(|l| l.next.is_none()) {
                break;
            }
            page += 1;
            if page > MAX_FIELD_PAGES {
                return Err(CrmError::permanent(format!(
                    "amoCRM lists more than {MAX_FIELD_PAGES} pages of lead fields; refusing to read on"
                )));
            }
        }
        let fields = Arc::new(fields);
        account.lead_fields = Some(fields.clone());
        Ok(fields)
    }

    /// The booking id field: the configured one; else the one kept in our store, if the
    /// account still has it; else the text field named [`BOOKING_FIELD_NAME`]; else a new one
    /// (`POST /api/v4/leads/custom_fields`). Found or created, its id goes into the store.
    pub async fn booking_field(&self) -> Result<(i64, FieldOrigin), CrmError> {
        let mut account = self.inner.account.lock().await;
        self.booking_field_locked(&mut account).await
    }

    pub(super) async fn booking_field_locked(
        &self,
        account: &mut AccountFields,
    ) -> Result<(i64, FieldOrigin), CrmError> {
        if let Some(id) = self.inner.config.booking_id_field_id {
            return Ok((id, FieldOrigin::Configured));
        }
        if let Some(known) = account.booking_field {
            return Ok(known);
        }
        let fields = self.lead_fields_locked(account, false).await?;
        let (entity, key) = BOOKING_FIELD_LINK;
        let stored = self
            .inner
            .store
            .external_id(&self.inner.business_id, entity, key, SYSTEM)
            .await
            .map_err(store_error)?
            .and_then(|id| id.parse::<i64>().ok());
        let resolved = match stored {
            Some(id) if fields.iter().any(|f| f.id == id) => (id, FieldOrigin::Stored),
            _ => {
                let named = |fields: &[LeadField]| {
                    fields
                        .iter()
                        .filter(|f| f.name.trim().eq_ignore_ascii_case(BOOKING_FIELD_NAME))
                        .min_by_key(|f| f.id)
                        .cloned()
                };
                // Never create from a list read earlier: an attempt whose answer was lost may
                // have created the field since.
                let found = match named(&fields) {
                    Some(f) => Some(f),
                    None => named(&self.lead_fields_locked(account, true).await?),
                };
                let (field, origin) = match found {
                    Some(f) => (f, FieldOrigin::Found),
                    None => {
                        self.create_text_field(BOOKING_FIELD_NAME).await?;
                        // Read back rather than trust the answer: two instances creating at
                        // once both settle on the oldest field of that name.
                        let fields = self.lead_fields_locked(account, true).await?;
                        let field = named(&fields).ok_or_else(|| {
                            CrmError::transient(format!(
                                "amoCRM lists no lead field «{BOOKING_FIELD_NAME}» after creating it"
                            ))
                        })?;
                        (field, FieldOrigin::Created)
                    }
                };
                if field.field_type != "text" {
                    return Err(CrmError::permanent(format!(
                        "the lead field «{}» ({}) is of type {:?}, not text; rename it or set crm.amocrm.booking_id_field_id",
                        field.name, field.id, field.field_type
                    )));
                }
                self.inner
                    .store
                    .put_link(
                        &self.inner.business_id,
                        entity,
                        key,
                        SYSTEM,
                        &field.id.to_string(),
                        self.now(),
                    )
                    .await
                    .map_err(store_error)?;
                tracing::info!(field_id = field.id, %origin, "amoCRM booking id field settled");
                (field.id, origin)
            }
        };
        account.booking_field = Some(resolved);
        Ok(resolved)
    }

    pub(super) async fn create_text_field(&self, name: &str) -> Result<i64, CrmError> {
        let body = [FieldOut {
            field_type: "text",
            name,
            request_id: "0",
        }];
        let bytes = self
            .send_json(Method::POST, "/api/v4/leads/custom_fields", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a field"))?;
        let added: FieldsPage = parse_body(&bytes, "field add response")?;
        let id = added
            .embedded
            .custom_fields
            .first()
            .map(|f| f.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no field"))?;
        tracing::info!(field_id = id, name, "amoCRM lead field created");
        Ok(id)
    }

    pub(super) async fn lead_context(&self) -> Result<LeadContext, CrmError> {
        let mut account = self.inner.account.lock().await;
        let (booking_field, _) = self.booking_field_locked(&mut account).await?;
        let fields = self.lead_fields_locked(&mut account, false).await?;
        let tracking = TRACKING_CODES
            .iter()
            .filter_map(|(code, _)| {
                fields
                    .iter()
                    .find(|f| f.code.as_deref() == Some(*code))
                    .map(|f| (*code, f.id))
            })
            .collect();
        Ok(LeadContext {
            booking_field,
            tracking,
        })
    }

    /// Forgets what was read about the account's fields, after amoCRM refused one of them.
    pub(super) async fn forget_fields(&self) {
        let mut account = self.inner.account.lock().await;
        *account = AccountFields::default();
    }

    /// Settles the booking id field and reports the tracking fields: `zapis amocrm setup`,
    /// `zapis check`, and the start of `zapis run`.
    pub async fn setup(&self) -> Result<SetupReport, CrmError> {
        let (booking_field_id, booking_field_origin) = self.booking_field().await?;
        let ctx = self.lead_context().await?;
        let (present, missing): (Vec<&str>, Vec<&str>) = TRACKING_CODES
            .iter()
            .map(|(code, _)| *code)
            .partition(|code| ctx.tracking.contains_key(code));
        Ok(SetupReport {
            booking_field_id,
            booking_field_origin,
            tracking_present: present.into_iter().map(str::to_string).collect(),
            tracking_missing: missing.into_iter().map(str::to_string).collect(),
        })
    }

    /// The note about tracking values without a field, if the booking has any.
    pub(super) async fn untracked_note(
        &self,
        booking: &Booking,
    ) -> Result<Option<String>, CrmError> {
        let ctx = self.lead_context().await?;
        let lines = Self::untracked(booking, &ctx.tracking);
        if lines.is_empty() {
            return Ok(None);
        }
        let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Some(format!(
            "{UNTRACKED_NOTE_HEADER}:\n{}",
            body.join("\n")
        )))
    }

    /// `POST /api/v4/leads` of one lead; its new id.
    pub(super) async fn post_plain_lead(&self, lead: LeadOut) -> Result<i64, CrmError> {
        let bytes = self
            .send_json(Method::POST, "/api/v4/leads", &[lead])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a lead"))?;
        let added: AddedPage<LeadsAddedEmbedded> = parse_body(&bytes, "leads response")?;
        added
            .embedded
            .leads
            .first()
            .map(|l| l.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no lead"))
    }

    /// Posts one lead (with a contact link, or with a new contact via `/leads/complex`, or
    /// without a contact when the request says so).
    pub(super) async fn post_lead(
        &self,
        req: &LeadRequest,
        contact: Option<i64>,
        ctx: &LeadContext,
    ) -> Result<(i64, Option<ContactRef>), CrmError> {
        let booking = &req.booking;
        match contact {
            None if req.without_contact => {
                let id = self.post_plain_lead(self.lead_out(req, None, ctx)).await?;
                Ok((id, None))
            }
            Some(contact_id) => {
                let lead = self.lead_out(
                    req,
                    Some(EmbeddedContact::Link {
                        id: contact_id,
                        is_main: true,
                    }),
                    ctx,
                );
                let id = self.post_plain_lead(lead).await?;
                Ok((
                    id,
                    Some(ContactRef {
                        id: contact_id.to_string(),
                        created: false,
                    }),
                ))
            }
            None => {
                // Lead and new contact in one call: no window where a contact exists without
                // its lead.
                let contact = Self::contact_out(&ContactRequest::for_booking(booking));
                let lead = self.lead_out(req, Some(EmbeddedContact::New(contact)), ctx);
                let bytes = self
                    .send_json(Method::POST, "/api/v4/leads/complex", &[lead])
                    .await?
                    .ok_or_else(|| CrmError::transient("amoCRM answered 204 to a complex add"))?;
                let added: Vec<ComplexIn> = parse_body(&bytes, "complex response")?;
                let first = added
                    .first()
                    .ok_or_else(|| CrmError::transient("amoCRM added no lead"))?;
                let contact = first.contact_id.map(|c| ContactRef {
                    id: c.to_string(),
                    created: !first.merged.unwrap_or(false),
                });
                Ok((first.id, contact))
            }
        }
    }

    /// First lines of the lead's common notes: how a retry tells which of its notes landed.
    pub(super) async fn note_heads(&self, lead_id: i64) -> Result<Vec<String>, CrmError> {
        let bytes = self
            .get(
                &format!("/api/v4/leads/{lead_id}/notes"),
                &[
                    ("filter[note_type]", "common".into()),
                    ("limit", "250".into()),
                ],
            )
            .await?;
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        let page: NotesPage = parse_body(&bytes, "notes list")?;
        Ok(page
            .embedded
            .notes
            .iter()
            .filter_map(|n| n.params.as_ref().and_then(|p| p.text.as_deref()))
            .filter_map(|t| t.lines().next().map(str::to_string))
            .collect())
    }

    pub(super) async fn post_notes(
        &self,
        lead_id: i64,
        texts: &[String],
    ) -> Result<Vec<String>, CrmError> {
        let mut ids = Vec::new();
        for batch in texts.chunks(BATCH) {
            let body: Vec<NoteOut> = batch
                .iter()
                .map(|text| NoteOut {
                    entity_id: lead_id,
                    note_type: "common",
                    params: NoteParamsOut { text: text.clone() },
                })
                .collect();
            let bytes = self
                .send_json(Method::POST, "/api/v4/leads/notes", &body)
                .await?
                .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding notes"))?;
            let added: AddedPage<NotesEmbedded> = parse_body(&bytes, "notes response")?;
            ids.extend(added.embedded.notes.iter().map(|n| n.id.to_string()));
        }
        Ok(ids)
    }
}
