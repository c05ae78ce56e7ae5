//! `zapis check --probe`: read-only calls against the live accounts that settle what no
//! documentation can (docs/yclients.md, docs/onec.md): whether YClients' admin calls need the
//! partner id, which zone the company's schedule keeps, which attributes the 1C configuration
//! demands. Each finding is one row: what was asked, what was found, and what zapis will do
//! about it. Nothing is written to any vendor.
//!
//! A vendor adds its rows in [`probe`]: the amoCRM tracking fields and the Dikidi session shape
//! have their places marked there.

use crate::domain::BusinessId;
use crate::domain::System;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use crate::accounting::config::{OnecConfig, OnecMode};
use crate::accounting::onec_odata::OnecOdata;
use crate::booking::BookingError;
use crate::booking::dikidi::Dikidi;
use crate::booking::yclients::{Yclients, YclientsConfig, is_partner_id_refusal};
use crate::clock::SystemClock;
use crate::config::{BookingSystemKind, Config};
use crate::crm::amocrm::AmoCrm;
use crate::crm::config::{AmoCrmConfig, CrmSystem};
use crate::store::Store;

/// One finding of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRow {
    pub system: System,
    /// What was asked, in a few words.
    pub question: String,
    pub found: String,
    /// What zapis does about it (or what the operator must change).
    pub action: String,
    /// False when the finding stops something from working until the configuration changes.
    pub ok: bool,
}

/// The probe's table, printed by `zapis check --probe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTable {
    pub rows: Vec<ProbeRow>,
}

impl ProbeTable {
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }

    fn push(&mut self, system: System, question: &str, found: String, action: String, ok: bool) {
        self.rows.push(ProbeRow {
            system,
            question: question.to_owned(),
            found,
            action,
            ok,
        });
    }
}

impl fmt::Display for ProbeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "probe (read-only calls; nothing was written):")?;
        if self.rows.is_empty() {
            return writeln!(f, "  nothing to probe in this configuration");
        }
        let width = |pick: fn(&ProbeRow) -> usize| self.rows.iter().map(pick).max().unwrap_or(0);
        let sys = width(|r| r.system.as_str().chars().count()).max(6);
        let q = width(|r| r.question.chars().count()).max(8);
        writeln!(
            f,
            "  {:<sys$}  {:<q$}  {:<4}  found → zapis will",
            "system", "question", ""
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<sys$}  {:<q$}  {:<4}  {} → {}",
                r.system,
                r.question,
                if r.ok { "ok" } else { "FIX" },
                r.found,
                r.action
            )?;
        }
        Ok(())
    }
}

/// Runs every probe the configuration allows.
pub async fn probe(config: &Config, store: Option<&Store>) -> ProbeTable {
    let mut table = ProbeTable::default();
    // The schedule.
    if let (BookingSystemKind::Yclients, Some(yc)) =
        (&config.booking.system, &config.booking.yclients)
    {
        yclients(&mut table, yc, config.business.timezone).await;
    }
    if let (BookingSystemKind::Dikidi, Some(dk)) = (&config.booking.system, &config.booking.dikidi)
    {
        let client = Dikidi::new(dk, config.business.timezone, Arc::new(SystemClock));
        let (found, action, ok) = match client.probe_session().await {
            Ok(shape) => (
                shape,
                "send it on time_reservation, check and record".to_string(),
                true,
            ),
            Err(e) => (
                e.to_string(),
                "cannot book until the widget opens a session".to_string(),
                false,
            ),
        };
        table.push(System::Dikidi, "widget session", found, action, ok);
    }

    // The CRM: which UTM tracking fields the amoCRM account has (read, never created).
    if let (Some(store), Some(amo)) = (
        store,
        config
            .crm
            .as_ref()
            .filter(|c| c.system == CrmSystem::Amocrm)
            .and_then(|c| c.amocrm.clone()),
    ) {
        amocrm_rows(&mut table, amo, store, &config.business.id).await;
    }

    // 1C.
    if let Some(onec) = config.onec.as_ref().filter(|o| o.mode == OnecMode::Odata) {
        onec_rows(&mut table, onec).await;
    }
    table
}

/// The UTM tracking fields the amoCRM account has: values go by field id where one exists,
/// into the lead's tags and a note where not.
async fn amocrm_rows(
    table: &mut ProbeTable,
    config: AmoCrmConfig,
    store: &Store,
    business: &BusinessId,
) {
    let client = match AmoCrm::new(config, store.clone(), business, Arc::new(SystemClock)) {
        Ok(client) => client,
        Err(e) => {
            table.push(
                System::AmoCrm,
                "UTM tracking fields",
                e.to_string(),
                "fix [crm.amocrm]".into(),
                false,
            );
            return;
        }
    };
    match client.lead_fields(true).await {
        Ok(fields) => {
            let (present, missing): (Vec<&str>, Vec<&str>) = [
                "UTM_SOURCE",
                "UTM_MEDIUM",
                "UTM_CAMPAIGN",
                "UTM_CONTENT",
                "UTM_TERM",
            ]
            .into_iter()
            .partition(|code| fields.iter().any(|f| f.code.as_deref() == Some(*code)));
            let list = |codes: &[&str]| {
                if codes.is_empty() {
                    "none".to_string()
                } else {
                    codes.join(", ")
                }
            };
            table.push(
                System::AmoCrm,
                "UTM tracking fields",
                format!("present: {}; missing: {}", list(&present), list(&missing)),
                if missing.is_empty() {
                    "send every UTM value by field id".into()
                } else {
                    "send the present ones by field id; the missing ones go into the lead's \
                     tags and a note"
                        .into()
                },
                true,
            );
        }
        Err(e) => table.push(
            System::AmoCrm,
            "UTM tracking fields",
            e.to_string(),
            "cannot read the account's lead fields: fix the token".into(),
            false,
        ),
    }
}

/// Admin calls with and without `X-Partner-Id`, and the company's zone against ours.
async fn yclients(table: &mut ProbeTable, config: &YclientsConfig, ours: chrono_tz::Tz) {
    let clock = Arc::new(SystemClock);
    let client = Yclients::new(config, clock.clone());
    match client.company().await {
        Ok(company) if company.timezone == ours => table.push(
            System::Yclients,
            "company time zone",
            format!("timezone_name {} = business.timezone", company.timezone),
            "show every time in it".into(),
            true,
        ),
        Ok(company) => table.push(
            System::Yclients,
            "company time zone",
            format!(
                "timezone_name {}, but business.timezone is {ours}",
                company.timezone
            ),
            format!(
                "show times in {} (the schedule's); set business.timezone = \"{}\"",
                company.timezone, company.timezone
            ),
            false,
        ),
        Err(e) => {
            table.push(
                System::Yclients,
                "company",
                format!("unreadable: {e}"),
                "nothing works until this answers".into(),
                false,
            );
            return;
        }
    }
    if config.user_token.is_none() {
        table.push(
            System::Yclients,
            "admin calls need X-Partner-Id",
            "not asked: no user_token".into(),
            "use the online-booking methods only (a lost booking answer cannot be searched)".into(),
            true,
        );
        return;
    }
    let bare = YclientsConfig {
        partner_id: None,
        ..config.clone()
    };
    let without = Yclients::new(&bare, clock.clone()).admin_read().await;
    let (found, action, ok) = match (without, config.partner_id) {
        (Ok(()), None) => (
            "admin calls answer without it".to_string(),
            "send no partner id".to_string(),
            true,
        ),
        (Ok(()), Some(id)) => (
            "admin calls answer without it".into(),
            format!("send X-Partner-Id {id} anyway (configured)"),
            true,
        ),
        (Err(BookingError::Failed(f)), None)
            if f.is_auth() && is_partner_id_refusal(&f.message) =>
        {
            (
                "refused without it (Не указан идентификатор партнера)".into(),
                "nothing until booking.yclients.partner_id is set: searching, cancelling and \
             confirming by id fail"
                    .into(),
                false,
            )
        }
        (Err(BookingError::Failed(f)), Some(id))
            if f.is_auth() && is_partner_id_refusal(&f.message) =>
        {
            match client.admin_read().await {
                Ok(()) => (
                    "refused without it, accepted with it".into(),
                    format!("send X-Partner-Id {id} on every call"),
                    true,
                ),
                Err(e) => (
                    format!("refused with X-Partner-Id {id} too: {e}"),
                    "nothing: check partner_id and the user's rights".into(),
                    false,
                ),
            }
        }
        (Err(e), _) => (
            format!("admin call failed: {e}"),
            "nothing: check user_token and the user's rights".into(),
            false,
        ),
    };
    table.push(
        System::Yclients,
        "admin calls need X-Partner-Id",
        found,
        action,
        ok,
    );
}

/// Attributes the 1C configuration marks required (`Nullable="false"`) on the objects zapis
/// writes, against what zapis sends.
async fn onec_rows(table: &mut ProbeTable, config: &OnecConfig) {
    let onec = match OnecOdata::new(config) {
        Ok(o) => o,
        Err(e) => {
            table.push(
                System::Onec,
                "configuration",
                e.to_string(),
                "nothing".into(),
                false,
            );
            return;
        }
    };
    let edmx = match onec.metadata().await {
        Ok(t) => t,
        Err(e) => {
            table.push(
                System::Onec,
                "$metadata",
                format!("unreadable: {e}"),
                "nothing until it answers".into(),
                false,
            );
            return;
        }
    };
    let required = match required_properties(&edmx) {
        Ok(r) => r,
        Err(e) => {
            table.push(System::Onec, "$metadata", e, "nothing".into(), false);
            return;
        }
    };
    let o = &config.objects;
    let writes: Vec<(String, Vec<String>)> = vec![
        (
            o.counterparties.clone(),
            [
                "Description",
                "НаименованиеПолное",
                "ИНН",
                "Комментарий",
                o.contacts_section.as_str(),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            format!("{}_{}", o.counterparties, o.contacts_section),
            [
                "LineNumber",
                "Тип",
                "Представление",
                o.phone_field.as_str(),
                o.email_field.as_str(),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (o.invoice.clone(), document_fields(&o.invoice_lines)),
        (format!("{}_{}", o.invoice, o.invoice_lines), line_fields()),
        (o.sales.clone(), document_fields(&o.sales_lines)),
        (format!("{}_{}", o.sales, o.sales_lines), line_fields()),
    ];
    for (set, sent) in writes {
        let Some(props) = required.get(&set) else {
            table.push(
                System::Onec,
                &format!("required attributes of {set}"),
                "not described in $metadata".into(),
                "write it as configured; 1C's answer will tell".into(),
                true,
            );
            continue;
        };
        let sent: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
        let missing: Vec<&str> = props
            .iter()
            .map(String::as_str)
            .filter(|p| !SYSTEM_PROPERTIES.contains(p) && !sent.contains(p))
            .collect();
        if missing.is_empty() {
            table.push(
                System::Onec,
                &format!("required attributes of {set}"),
                "none beyond what zapis sends".into(),
                "write as configured".into(),
                true,
            );
        } else {
            table.push(
                System::Onec,
                &format!("required attributes of {set}"),
                format!("required and not sent: {}", missing.join(", ")),
                "nothing: 1C will refuse these writes until the configuration fills them \
                 (a default in 1C, or a value zapis is told to send)"
                    .into(),
                false,
            );
        }
    }
}

/// Filled by 1C itself.
const SYSTEM_PROPERTIES: &[&str] = &[
    "Ref_Key",
    "DataVersion",
    "DeletionMark",
    "Number",
    "Predefined",
    "PredefinedDataName",
    "IsFolder",
    "Parent_Key",
    "Code",
];

fn document_fields(lines: &str) -> Vec<String> {
    [
        "Date",
        "Организация_Key",
        "Контрагент_Key",
        "Комментарий",
        "СуммаДокумента",
        "Posted",
        lines,
    ]
    .map(String::from)
    .to_vec()
}

fn line_fields() -> Vec<String> {
    [
        "LineNumber",
        "Номенклатура_Key",
        "Содержание",
        "Количество",
        "Цена",
        "Сумма",
    ]
    .map(String::from)
    .to_vec()
}

/// Entity type name (without its namespace) → the names of its properties marked
/// `Nullable="false"`, read from the EDMX.
pub fn required_properties(edmx: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut reader = Reader::from_str(edmx);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| {
        e.attributes().flatten().find_map(|a| {
            if a.key.local_name().into_inner() != name {
                return None;
            }
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().into_inner() == "EntityType" => {
                current = attr(&e, "Name");
                if let Some(name) = &current {
                    out.entry(name.clone()).or_default();
                }
            }
            Ok(Event::End(e)) if e.local_name().into_inner() == "EntityType" => current = None,
            Ok(Event::Start(e)) | Ok(Event::Empty(e))
                if e.local_name().into_inner() == "Property" =>
            {
                if let (Some(entity), Some(name)) = (&current, attr(&e, "Name"))
                    && attr(&e, "Nullable").as_deref() == Some("false")
                {
                    out.entry(entity.clone()).or_default().push(name);
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("$metadata is not readable XML: {e}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_properties_are_read_per_entity_type() {
        let edmx = r#"<edmx:Edmx xmlns:edmx="x"><edmx:DataServices><Schema>
            <EntityType Name="Catalog_A"><Key><PropertyRef Name="Ref_Key"/></Key>
              <Property Name="Ref_Key" Type="Edm.Guid" Nullable="false"/>
              <Property Name="Вид" Type="Edm.String" Nullable="false"/>
              <Property Name="Description" Type="Edm.String"/>
            </EntityType>
            <EntityType Name="Catalog_B"><Property Name="X" Nullable="true"/></EntityType>
        </Schema></edmx:DataServices></edmx:Edmx>"#;
        let r = required_properties(edmx).unwrap();
        assert_eq!(r["Catalog_A"], ["Ref_Key", "Вид"]);
        assert!(r["Catalog_B"].is_empty());
        assert!(required_properties("<a><b></a>").is_err());
    }

    #[test]
    fn the_table_marks_what_needs_fixing() {
        let mut t = ProbeTable::default();
        t.push(System::Yclients, "q", "f".into(), "a".into(), true);
        assert!(t.ok());
        t.push(
            System::Onec,
            "question two",
            "found".into(),
            "act".into(),
            false,
        );
        assert!(!t.ok());
        let text = t.to_string();
        assert!(text.contains("nothing was written"), "{text}");
        assert!(
            text.contains("FIX") && text.contains("found → act"),
            "{text}"
        );
    }
}
