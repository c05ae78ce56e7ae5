//! The CRM steps as Bitrix24 methods: find a contact by its phone variants, create or update it,
//! the deal (lead), its timeline comments, the todo; token exchange for an OAuth application.

use super::*;
use crate::domain::BusinessId;

// -------------------------------------------------------------------- CRM operations

impl Bitrix24 {
    pub(super) fn entity_prefix(&self) -> &'static str {
        if self.is_deal() {
            "crm.deal"
        } else {
            "crm.lead"
        }
    }

    /// `ENTITY_TYPE` of timeline comments.
    pub(super) fn timeline_type(&self) -> &'static str {
        if self.is_deal() { "deal" } else { "lead" }
    }

    /// `ownerTypeId` of activities: 1 lead, 2 deal.
    pub(super) fn owner_type_id(&self) -> i64 {
        if self.is_deal() { 2 } else { 1 }
    }

    pub(super) fn stage_field(&self) -> &'static str {
        if self.is_deal() {
            "STAGE_ID"
        } else {
            "STATUS_ID"
        }
    }

    /// The `crm.status.list` directory of our stages.
    pub(super) fn directory_name(&self, category: i64) -> String {
        match (self.is_deal(), category) {
            (false, _) => "STATUS".into(),
            (true, 0) => "DEAL_STAGE".into(),
            (true, n) => format!("DEAL_STAGE_{n}"),
        }
    }

    pub(super) async fn directory(
        &self,
        entity: &str,
        reload: bool,
    ) -> Result<Vec<StatusItem>, CrmError> {
        let mut cache = self.inner.directory.lock().await;
        if !reload && let Some(items) = cache.get(entity) {
            return Ok(items.clone());
        }
        let raw = self
            .list_all(
                "crm.status.list",
                json!({"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}),
            )
            .await?;
        let items: Vec<StatusItem> = raw
            .into_iter()
            .filter_map(|v| serde_json::from_value::<StatusIn>(v).ok())
            .filter_map(|s| {
                Some(StatusItem {
                    id: id_of(&s.id)?,
                    status_id: s.status_id,
                    name: s.name.unwrap_or_default(),
                    semantics: s.extra.and_then(|e| e.semantics).filter(|x| !x.is_empty()),
                })
            })
            .collect();
        cache.insert(entity.to_string(), items.clone());
        Ok(items)
    }

    /// The directory's numeric id of a stage string, re-reading the directory once when the
    /// stage is new to us; 0 when the portal does not list it.
    pub(super) async fn numeric_stage(
        &self,
        category: i64,
        stage_id: &str,
    ) -> Result<i64, CrmError> {
        let entity = self.directory_name(category);
        for reload in [false, true] {
            if let Some(s) = self
                .directory(&entity, reload)
                .await?
                .iter()
                .find(|s| s.status_id == stage_id)
            {
                return Ok(s.id);
            }
        }
        tracing::warn!(stage_id, directory = %entity, "Bitrix24 stage not in its directory");
        Ok(0)
    }

    pub(super) fn classify(&self, stage_id: &str) -> Option<Stage> {
        let cfg = &self.inner.config;
        if stage_id == cfg.new_stage() {
            Some(Stage::New)
        } else if stage_id == cfg.cancelled_stage() {
            Some(Stage::Cancelled)
        } else if stage_id == cfg.done_stage() {
            Some(Stage::Done)
        } else {
            None
        }
    }

    pub(super) async fn to_crm_lead(&self, e: &EntityIn) -> Result<CrmLead, CrmError> {
        let id = id_of(&e.id).ok_or_else(|| CrmError::transient("Bitrix24 entity without ID"))?;
        let category = if self.is_deal() {
            e.category_id.as_ref().and_then(id_of).unwrap_or(0)
        } else {
            0
        };
        let stage = self.stage_of(e);
        let status_id = self.numeric_stage(category, &stage).await?;
        let price = e
            .opportunity
            .as_ref()
            .and_then(text_of)
            .and_then(|p| p.trim().parse::<f64>().ok())
            .map(|p| p.round() as i64);
        Ok(CrmLead {
            id: id.to_string(),
            status_id,
            pipeline_id: category,
            price,
            name: e.title.clone(),
        })
    }

    pub(super) fn stage_of(&self, e: &EntityIn) -> String {
        let raw = if self.is_deal() {
            &e.stage_id
        } else {
            &e.status_id
        };
        raw.clone().unwrap_or_default()
    }

    // ---------------------------------------------------------------- contacts

    /// Contacts whose phone (then email) is ours, oldest first, verified on our side: the
    /// duplicate search ignores extensions and matches whole strings only.
    pub(super) async fn find_contact(
        &self,
        phone: &Phone,
        email: Option<&Email>,
    ) -> Result<Option<i64>, CrmError> {
        let by_phone = if phone.is_erased() {
            Vec::new()
        } else {
            self.duplicates("PHONE", phone_variants(phone)).await?
        };
        for c in self.contacts_by_id(&by_phone).await? {
            if c.phones().any(|p| &p == phone) {
                let id = id_of(&c.id).unwrap_or_default();
                tracing::debug!(contact_id = id, phone = %phone.masked(), "Bitrix24 contact found by phone");
                return Ok(Some(id));
            }
        }
        if let Some(email) = email {
            // Both written forms: a manager may have typed either.
            let wanted = Email::parse_ascii(email.as_str()).ok();
            let mut forms = vec![email.unicode()];
            if let Some(ascii) = &wanted
                && ascii.as_str() != forms[0]
            {
                forms.push(ascii.as_str().to_string());
            }
            let by_email = self.duplicates("EMAIL", forms).await?;
            for c in self.contacts_by_id(&by_email).await? {
                if c.emails()
                    .any(|e| &e == email || Email::parse_ascii(e.as_str()).ok() == wanted)
                {
                    let id = id_of(&c.id).unwrap_or_default();
                    tracing::debug!(contact_id = id, email = %email.masked(), "Bitrix24 contact found by email");
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn duplicates(
        &self,
        kind: &str,
        values: Vec<String>,
    ) -> Result<Vec<i64>, CrmError> {
        let answer = self
            .call(
                "crm.duplicate.findbycomm",
                json!({"entity_type": "CONTACT", "type": kind, "values": values}),
            )
            .await?;
        // Nothing found is `[]`, found is `{"CONTACT": [ids]}`.
        let mut ids: Vec<i64> = answer
            .result
            .get("CONTACT")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(id_of).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    pub(super) async fn contacts_by_id(&self, ids: &[i64]) -> Result<Vec<ContactIn>, CrmError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // PHONE and EMAIL are multiple fields: `*` leaves them out, so they are named.
        let raw = self
            .list_all(
                "crm.contact.list",
                json!({"filter": {"@ID": ids}, "select": ["ID", "NAME", "PHONE", "EMAIL"], "order": {"ID": "ASC"}}),
            )
            .await?;
        let mut contacts: Vec<ContactIn> = raw
            .into_iter()
            .filter_map(|v| match serde_json::from_value(v) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable Bitrix24 contact skipped");
                    None
                }
            })
            .collect();
        contacts.sort_by_key(|c| id_of(&c.id).unwrap_or(i64::MAX));
        Ok(contacts)
    }

    pub(super) fn multifields(req_phone: &Phone, email: Option<&Email>) -> (Value, Option<Value>) {
        (
            json!([{"VALUE": req_phone.as_str(), "VALUE_TYPE": phone_value_type(req_phone.is_mobile())}]),
            email.map(|e| json!([{"VALUE": e.unicode(), "VALUE_TYPE": "WORK"}])),
        )
    }

    pub(super) async fn add_contact(&self, req: &ContactRequest) -> Result<i64, CrmError> {
        let (phone, email) = Self::multifields(&req.phone, req.email.as_ref());
        let mut fields = json!({"NAME": req.name, "OPENED": "Y", "PHONE": phone});
        if let Some(email) = email {
            fields["EMAIL"] = email;
        }
        if let Some(r) = self.inner.config.responsible_id {
            fields["ASSIGNED_BY_ID"] = json!(r);
        }
        let answer = self
            .call(
                "crm.contact.add",
                json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}),
            )
            .await?;
        let id = id_of(&answer.result)
            .ok_or_else(|| CrmError::transient("Bitrix24 added no contact"))?;
        tracing::info!(contact_id = id, phone = %req.phone.masked(), "Bitrix24 contact created");
        Ok(id)
    }

    // ---------------------------------------------------------------- deals / leads

    pub(super) fn source_description(booking: &Booking) -> String {
        let s = &booking.source;
        let mut parts = vec![format!("zapis: {}", s.channel.as_str())];
        if let Some(link) = &s.link_name {
            parts.push(format!("link {link}"));
        }
        if let Some(payload) = &s.payload {
            parts.push(format!("start={payload}"));
        }
        parts.join("; ")
    }

    pub(super) fn entity_fields(
        &self,
        req: &LeadRequest,
        contact_id: Option<i64>,
    ) -> Map<String, Value> {
        let cfg = &self.inner.config;
        let booking = &req.booking;
        let mut f = Map::new();
        f.insert("TITLE".into(), json!(req.title()));
        f.insert("OPPORTUNITY".into(), json!(money(booking.price.kopecks())));
        f.insert("CURRENCY_ID".into(), json!("RUB"));
        f.insert(
            "SOURCE_ID".into(),
            json!(cfg.source_for(booking.source.channel.as_str())),
        );
        f.insert(
            "SOURCE_DESCRIPTION".into(),
            json!(Self::source_description(booking)),
        );
        f.insert("OPENED".into(), json!("Y"));
        f.insert(
            "COMMENTS".into(),
            json!(format!(
                "{}, мастер {}, {} UTC, {} мин",
                booking.service_name,
                booking.master_name,
                booking.start.format("%d.%m.%Y %H:%M"),
                booking.duration_min
            )),
        );
        let utm = &booking.source.utm;
        for (key, value) in [
            ("UTM_SOURCE", &utm.source),
            ("UTM_MEDIUM", &utm.medium),
            ("UTM_CAMPAIGN", &utm.campaign),
            ("UTM_CONTENT", &utm.content),
            ("UTM_TERM", &utm.term),
        ] {
            if let Some(v) = value {
                f.insert(key.into(), json!(v));
            }
        }
        f.insert(cfg.booking_id_field.clone(), json!(booking.id));
        if cfg.booking_id_field == "ORIGIN_ID" {
            f.insert("ORIGINATOR_ID".into(), json!(ORIGINATOR));
        }
        if let Some(r) = cfg.responsible_id {
            f.insert("ASSIGNED_BY_ID".into(), json!(r));
        }
        match cfg.mode {
            Bitrix24Mode::Deal => {
                f.insert("CATEGORY_ID".into(), json!(cfg.category_id));
                f.insert("STAGE_ID".into(), json!(cfg.new_stage()));
                if let Some(c) = contact_id {
                    f.insert("CONTACT_ID".into(), json!(c));
                }
            }
            Bitrix24Mode::Lead => {
                f.insert("STATUS_ID".into(), json!(cfg.new_stage()));
                f.insert("NAME".into(), json!(booking.client_name));
                if !req.without_contact {
                    let (phone, email) =
                        Self::multifields(&booking.client_phone, booking.client_email.as_ref());
                    f.insert("PHONE".into(), phone);
                    if let Some(email) = email {
                        f.insert("EMAIL".into(), email);
                    }
                }
                if let Some(c) = contact_id {
                    f.insert("CONTACT_ID".into(), json!(c));
                }
            }
        }
        f
    }

    pub(super) fn comment_params(&self, id: i64, text: &str) -> Value {
        // Timeline comments take `fields` in lower case only (crm 23.100.0+).
        json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": self.timeline_type(), "COMMENT": text}})
    }

    /// Adds comments, one call for one, `batch` (halt=0: the parts are independent) for more.
    pub(super) async fn post_comments(
        &self,
        id: i64,
        texts: &[String],
    ) -> Result<Vec<String>, CrmError> {
        match texts {
            [] => Ok(Vec::new()),
            [one] => {
                let answer = self
                    .call("crm.timeline.comment.add", self.comment_params(id, one))
                    .await?;
                let cid = id_of(&answer.result)
                    .ok_or_else(|| CrmError::transient("Bitrix24 added no comment"))?;
                Ok(vec![cid.to_string()])
            }
            many => {
                let commands: Vec<Command> = many
                    .iter()
                    .enumerate()
                    .map(|(i, text)| Command {
                        name: format!("comment_{i}"),
                        method: "crm.timeline.comment.add",
                        params: self.comment_params(id, text),
                    })
                    .collect();
                let names: Vec<String> = commands.iter().map(|c| c.name.clone()).collect();
                let results = self.batch(commands, false).await?;
                Ok(names
                    .iter()
                    .filter_map(|n| results.get(n).and_then(id_of))
                    .map(|i| i.to_string())
                    .collect())
            }
        }
    }

    pub(super) async fn comments(&self, id: i64) -> Result<Vec<String>, CrmError> {
        let raw = self
            .list_all(
                "crm.timeline.comment.list",
                json!({"filter": {"ENTITY_ID": id, "ENTITY_TYPE": self.timeline_type()}, "select": ["ID", "COMMENT"]}),
            )
            .await?;
        Ok(raw
            .iter()
            .filter_map(|c| c.get("COMMENT").and_then(text_of))
            .collect())
    }

    /// Re-reads a deal (lead in lead mode): what an `ONCRM…UPDATE` event needs, since events
    /// carry only the id. `None` when the portal no longer has it.
    pub async fn deal_stage(&self, id: &str) -> Result<Option<EntityStage>, CrmError> {
        let Some(e) = self.get_entity(entity_id(id)?).await? else {
            return Ok(None);
        };
        let stage_id = self.stage_of(&e);
        Ok(Some(EntityStage {
            id: id.to_string(),
            category_id: if self.is_deal() {
                e.category_id.as_ref().and_then(id_of).unwrap_or(0)
            } else {
                0
            },
            stage: self.classify(&stage_id),
            stage_id,
        }))
    }

    pub(super) async fn get_entity(&self, id: i64) -> Result<Option<EntityIn>, CrmError> {
        let method = format!("{}.get", self.entity_prefix());
        match self.call(&method, json!({"id": id})).await {
            Ok(answer) => Ok(Some(parse_value(answer.result, "entity")?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn resolve_stage(&self, stage: &Stage) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        Ok(match stage {
            Stage::New => cfg.new_stage(),
            Stage::Cancelled => cfg.cancelled_stage(),
            Stage::Done => cfg.done_stage(),
            Stage::Custom {
                pipeline_id,
                status_id,
            } => {
                let category = pipeline_id.unwrap_or(cfg.category_id);
                if self.is_deal() && category != cfg.category_id {
                    return Err(CrmError::permanent(format!(
                        "moving a deal to funnel {category} needs crm.item.update; zapis keeps deals in crm.bitrix24.category_id = {}",
                        cfg.category_id
                    )));
                }
                let entity = self.directory_name(category);
                self.directory(&entity, true)
                    .await?
                    .into_iter()
                    .find(|s| s.id == *status_id)
                    .map(|s| s.status_id)
                    .ok_or_else(|| {
                        CrmError::permanent(format!("stage {status_id} is not in {entity}"))
                    })?
            }
        })
    }

    // ---------------------------------------------------------------- admin

    /// The portal's lead/deal sources (`crm.status.list`, `ENTITY_ID = SOURCE`), for mapping
    /// our channels in `crm.bitrix24.sources`.
    pub async fn sources(&self) -> Result<Vec<StatusItem>, CrmError> {
        self.directory("SOURCE", true).await
    }

    /// Validates the credentials (`crm.deal.fields` / `crm.lead.fields`, which also shows the
    /// booking id field exists), the configured stages (`crm.status.list`) and sources.
    pub async fn check(&self) -> Result<CheckReport, CrmError> {
        let cfg = &self.inner.config;
        let fields = self
            .call(&format!("{}.fields", self.entity_prefix()), json!({}))
            .await?
            .result;
        if fields.get(&cfg.booking_id_field).is_none() {
            return Err(CrmError::permanent(format!(
                "field {} (crm.bitrix24.booking_id_field) does not exist on {}s; create a string user field or use ORIGIN_ID",
                cfg.booking_id_field,
                self.timeline_type()
            )));
        }
        let category = if self.is_deal() { cfg.category_id } else { 0 };
        let directory = self.directory_name(category);
        let stages = self.directory(&directory, true).await?;
        if stages.is_empty() {
            return Err(CrmError::permanent(format!(
                "{directory} is empty: funnel {category} (crm.bitrix24.category_id) does not exist"
            )));
        }
        let configured = vec![
            ("new_stage_id", cfg.new_stage()),
            ("cancelled_stage_id", cfg.cancelled_stage()),
            ("done_stage_id", cfg.done_stage()),
        ];
        for (key, id) in &configured {
            if !stages.iter().any(|s| &s.status_id == id) {
                return Err(CrmError::permanent(format!(
                    "stage {id} (crm.bitrix24.{key}) is not in {directory}"
                )));
            }
        }
        let sources = self.sources().await?;
        let mut wanted: Vec<(String, &String)> = cfg
            .sources
            .iter()
            .map(|(k, v)| (format!("sources.{k}"), v))
            .collect();
        wanted.push(("default_source_id".into(), &cfg.default_source_id));
        for (key, id) in wanted {
            if !sources.iter().any(|s| &s.status_id == id) {
                return Err(CrmError::permanent(format!(
                    "source {id} (crm.bitrix24.{key}) is not in the portal's sources; add it (crm.status.add ENTITY_ID=SOURCE) or pick one of {}",
                    sources
                        .iter()
                        .map(|s| s.status_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(CheckReport {
            auth: if self.is_oauth() { "oauth" } else { "webhook" },
            mode: cfg.mode,
            category_id: category,
            directory,
            stages,
            configured,
            booking_id_field: cfg.booking_id_field.clone(),
            sources,
        })
    }

    /// Parses an outbound event and checks its `auth[application_token]` against
    /// `crm.bitrix24.application_token`.
    pub fn parse_event(&self, body: &[u8]) -> Result<Event, EventError> {
        let token = self
            .inner
            .config
            .application_token
            .as_ref()
            .ok_or(EventError::NotConfigured)?;
        parse_event(body, token)
    }
}

/// `zapis bitrix24 auth --code CODE`: exchanges the code and stores the first token pair.
pub async fn authorize(
    config: Bitrix24Config,
    store: Store,
    business_id: &BusinessId,
    code: &str,
) -> Result<(), CrmError> {
    let client = Bitrix24::new(
        config,
        store,
        business_id,
        Arc::new(crate::clock::SystemClock),
    )?;
    client.exchange_code(code).await
}
