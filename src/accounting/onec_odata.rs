//! 1C's OData standard interface (`{publication}/odata/standard.odata/`): HTTP Basic with an
//! infobase user, `$format=json`, objects addressed as `Set(guid'…')`, references as `…_Key`
//! GUIDs, errors as `{"odata.error": {"code", "message": {"lang", "value"}}}`.

use crate::domain::System;
use std::collections::BTreeMap;

use async_trait::async_trait;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::config::{ObjectNames, OnecConfig, is_guid};
use crate::connectors::{Failure, Kind, Quirks};

use super::{
    Accounting, AccountingError, CounterpartyRequest, DocKind, DocumentRequest, StockBalance,
};

/// `{"value": [...]}`: the list envelope (`odata.metadata`, `odata.count` are ignored).
#[derive(Debug, Deserialize)]
pub struct ODataList<T> {
    pub value: Vec<T>,
}

/// A counterparty as 1C returns it; unknown attributes are ignored, since every configuration
/// has its own.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Counterparty {
    #[serde(rename = "Ref_Key")]
    pub ref_key: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "ИНН", default)]
    pub inn: Option<String>,
    #[serde(rename = "DeletionMark", default)]
    pub deletion_mark: bool,
}

/// Just the key of a created or found object.
#[derive(Debug, Clone, Deserialize)]
pub struct Keyed {
    #[serde(rename = "Ref_Key")]
    pub ref_key: String,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    #[serde(rename = "odata.error")]
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: ErrorMessage,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorMessage {
    #[serde(default)]
    value: String,
}

pub struct OnecOdata {
    http: reqwest::Client,
    /// Ends with `/odata/standard.odata/`.
    base: Url,
    user: String,
    password: SecretString,
    objects: ObjectNames,
    organisation_key: String,
    nomenclature_key: Option<String>,
    services: BTreeMap<String, String>,
}

/// OData string literal: a quote is doubled.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl OnecOdata {
    pub fn new(config: &OnecConfig) -> Result<OnecOdata, AccountingError> {
        let missing = |k: &str| AccountingError::permanent(format!("onec.{k} is not set"));
        let mut base = config.base_url.clone().ok_or_else(|| missing("base_url"))?;
        let path = base.path().trim_end_matches('/').to_string();
        let path = if path.ends_with("/odata/standard.odata") {
            format!("{path}/")
        } else {
            format!("{path}/odata/standard.odata/")
        };
        base.set_path(&path);
        let http = crate::connectors::http::builder(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| {
                AccountingError::permanent(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(OnecOdata {
            http,
            base,
            user: config.user.clone().ok_or_else(|| missing("user"))?,
            password: config.password.clone().ok_or_else(|| missing("password"))?,
            objects: config.objects.clone(),
            organisation_key: config
                .organisation_key
                .clone()
                .ok_or_else(|| missing("organisation_key"))?,
            nomenclature_key: config.nomenclature_key.clone(),
            services: config.services.clone(),
        })
    }

    pub fn objects(&self) -> &ObjectNames {
        &self.objects
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, AccountingError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| AccountingError::permanent(format!("bad object path {path:?}: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<String, AccountingError> {
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&self.user, Some(self.password.expose_secret()))
            .header("Accept", "application/json");
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| {
            AccountingError::transient(format!("1C unreachable: {}", e.without_url()))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            AccountingError::from(
                Failure::transient(format!("1C answer cut off: {}", e.without_url()))
                    .with_status(status.as_u16()),
            )
        })?;
        if status.is_success() {
            return Ok(text);
        }
        Err(classify(status, &text))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, AccountingError> {
        let mut q = vec![("$format", "json")];
        q.extend_from_slice(query);
        let text = self.call(Method::GET, self.url(path, &q)?, None).await?;
        serde_json::from_str(&text).map_err(|e| {
            AccountingError::permanent(format!("unexpected answer from 1C for {path}: {e}"))
        })
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Keyed, AccountingError> {
        let text = self
            .call(
                Method::POST,
                self.url(path, &[("$format", "json")])?,
                Some(body),
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| {
            AccountingError::permanent(format!(
                "1C created {path} but its answer has no Ref_Key: {e}"
            ))
        })
    }

    fn doc_names(&self, kind: DocKind) -> (&str, &str) {
        match kind {
            DocKind::Invoice => (&self.objects.invoice, &self.objects.invoice_lines),
            DocKind::Sales => (&self.objects.sales, &self.objects.sales_lines),
        }
    }

    fn nomenclature(&self, service_id: &str) -> Result<&str, AccountingError> {
        self.services
            .get(service_id)
            .or(self.nomenclature_key.as_ref())
            .map(String::as_str)
            .ok_or_else(|| AccountingError::permanent(format!(
                    "service {service_id:?} has no Номенклатура in onec.services and onec.nomenclature_key is not set"
                )))
    }

    /// A live counterparty with `value` in the contact-information attribute `field`. Contacts
    /// live in a tabular section whose rows carry the owner's Ref_Key.
    async fn find_by_contact(
        &self,
        field: &str,
        value: &str,
    ) -> Result<Option<String>, AccountingError> {
        let set = format!(
            "{}_{}",
            self.objects.counterparties, self.objects.contacts_section
        );
        let filter = format!("{field} eq {}", literal(value));
        let list: ODataList<Keyed> = self
            .get_json(&set, &[("$filter", &filter), ("$select", "Ref_Key")])
            .await?;
        for row in list.value {
            // A counterparty marked for deletion is not the client any more.
            let path = format!("{}(guid'{}')", self.objects.counterparties, row.ref_key);
            let found: Result<Counterparty, _> = self.get_json(&path, &[]).await;
            match found {
                Ok(c) if !c.deletion_mark => return Ok(Some(c.ref_key)),
                Ok(_) => {}
                Err(e) if e.kind() == Kind::Permanent && e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The base's `$metadata` (EDMX) as text.
    pub async fn metadata(&self) -> Result<String, AccountingError> {
        self.call(Method::GET, self.url("$metadata", &[])?, None)
            .await
    }

    /// The entity sets the base publishes, from `$metadata` (EDMX).
    pub async fn entity_sets(&self) -> Result<Vec<String>, AccountingError> {
        let text = self
            .call(Method::GET, self.url("$metadata", &[])?, None)
            .await?;
        parse_entity_sets(&text)
    }
}

/// Maps a 1C refusal to the retry decision by [`OnecQuirks`] and the status, keeping 1C's own
/// message.
pub fn classify(status: StatusCode, body: &str) -> AccountingError {
    let detail = serde_json::from_str::<ErrorEnvelope>(body)
        .map(|e| {
            let code = match &e.error.code {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("1C error {code}: {}", e.error.message.value)
        })
        .unwrap_or_else(|_| {
            let snippet: String = body.chars().take(200).collect();
            format!("1C answered HTTP {}: {snippet}", status.as_u16())
        });
    // 1C's publication sends no Retry-After; none has ever been read.
    Failure::from_status(&OnecQuirks, status.as_u16(), None, None, detail).into()
}

/// Where this connector has always read 1C's statuses otherwise than the shared classifier:
/// the server busy or failing (any 5xx, 429) passes, and everything else that is not about
/// credentials (an unknown object, a bad attribute, validation, a timeout the publication
/// reports) is refused. Kept as it was.
struct OnecQuirks;

impl Quirks for OnecQuirks {
    fn classify(&self, status: Option<u16>, _: Option<&str>, _: &str) -> Option<Kind> {
        match status? {
            501 | 505 => Some(Kind::Transient { retry_after: None }),
            402 | 408 | 425 => Some(Kind::Permanent),
            _ => None,
        }
    }
}

/// `EntitySet Name="…"` of the EDMX, read with the XML reader.
pub fn parse_entity_sets(edmx: &str) -> Result<Vec<String>, AccountingError> {
    let mut reader = Reader::from_str(edmx);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e))
                if e.local_name().into_inner() == "EntitySet" =>
            {
                for a in e.attributes().flatten() {
                    if a.key.local_name().into_inner() == "Name"
                        && let Ok(v) = a.normalized_value(XmlVersion::Implicit1_0)
                    {
                        out.push(v.into_owned());
                    }
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(AccountingError::permanent(format!(
                    "1C's $metadata is not readable XML: {e}"
                )));
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Accounting for OnecOdata {
    fn system(&self) -> System {
        System::Onec
    }

    async fn find_counterparty(
        &self,
        phone: Option<&str>,
        inn: Option<&str>,
    ) -> Result<Option<String>, AccountingError> {
        if let Some(inn) = inn.filter(|i| !i.is_empty()) {
            let filter = format!("ИНН eq {} and DeletionMark eq false", literal(inn));
            let list: ODataList<Counterparty> = self
                .get_json(
                    &self.objects.counterparties,
                    &[
                        ("$filter", &filter),
                        ("$select", "Ref_Key,Description,ИНН,DeletionMark"),
                    ],
                )
                .await?;
            if let Some(c) = list.value.into_iter().find(|c| !c.deletion_mark) {
                return Ok(Some(c.ref_key));
            }
        }
        match phone {
            Some(phone) => self.find_by_contact(&self.objects.phone_field, phone).await,
            None => Ok(None),
        }
    }

    async fn find_counterparty_by_email(
        &self,
        email: &str,
    ) -> Result<Option<String>, AccountingError> {
        self.find_by_contact(&self.objects.email_field, email).await
    }

    async fn create_counterparty(
        &self,
        request: &CounterpartyRequest,
    ) -> Result<String, AccountingError> {
        let mut contacts = Vec::new();
        if let Some(phone) = &request.phone {
            contacts.push(json!({
                "LineNumber": (contacts.len() + 1).to_string(),
                "Тип": "Телефон",
                "Представление": phone,
                self.objects.phone_field.as_str(): phone,
            }));
        }
        if let Some(email) = &request.email {
            contacts.push(json!({
                "LineNumber": (contacts.len() + 1).to_string(),
                "Тип": "АдресЭлектроннойПочты",
                "Представление": email,
                self.objects.email_field.as_str(): email,
            }));
        }
        let mut body = json!({
            "Description": request.name,
            "НаименованиеПолное": request.name,
            self.objects.contacts_section.as_str(): contacts,
        });
        if let (Some(inn), Some(map)) = (&request.inn, body.as_object_mut()) {
            map.insert("ИНН".into(), json!(inn));
        }
        if let (Some(comment), Some(map)) = (&request.comment, body.as_object_mut()) {
            map.insert("Комментарий".into(), json!(comment));
        }
        let created = self.post_json(&self.objects.counterparties, &body).await?;
        Ok(created.ref_key)
    }

    async fn find_document(
        &self,
        kind: DocKind,
        marker: &str,
    ) -> Result<Option<String>, AccountingError> {
        let (set, _) = self.doc_names(kind);
        let filter = format!(
            "Комментарий eq {} and DeletionMark eq false",
            literal(marker)
        );
        let list: ODataList<Keyed> = self
            .get_json(set, &[("$filter", &filter), ("$select", "Ref_Key")])
            .await?;
        Ok(list.value.into_iter().next().map(|k| k.ref_key))
    }

    async fn create_document(
        &self,
        kind: DocKind,
        doc: &DocumentRequest,
    ) -> Result<String, AccountingError> {
        let (set, lines_name) = self.doc_names(kind);
        if !is_guid(&doc.counterparty_key) {
            return Err(AccountingError::permanent(format!(
                "counterparty key {:?} is not a GUID",
                doc.counterparty_key
            )));
        }
        let mut lines = Vec::new();
        let mut total: i64 = 0;
        for (i, line) in doc.lines.iter().enumerate() {
            let sum = line.price_minor * i64::from(line.quantity);
            total += sum;
            lines.push(json!({
                "LineNumber": (i + 1).to_string(),
                "Номенклатура_Key": self.nomenclature(&line.service_id)?,
                "Содержание": line.name,
                "Количество": line.quantity,
                "Цена": minor_to_number(line.price_minor),
                "Сумма": minor_to_number(sum),
            }));
        }
        let body = json!({
            "Date": doc.date.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "Организация_Key": self.organisation_key,
            "Контрагент_Key": doc.counterparty_key,
            "Комментарий": doc.marker,
            "СуммаДокумента": minor_to_number(total),
            "Posted": false,
            lines_name: lines,
        });
        Ok(self.post_json(set, &body).await?.ref_key)
    }

    async fn post_document(&self, kind: DocKind, key: &str) -> Result<(), AccountingError> {
        let (set, _) = self.doc_names(kind);
        let path = format!("{set}(guid'{key}')/Post");
        let url = self.url(&path, &[("PostingModeOperational", "false")])?;
        self.call(Method::POST, url, None).await?;
        Ok(())
    }

    async fn stock(&self) -> Result<Vec<StockBalance>, AccountingError> {
        let path = format!("{}/Balance", self.objects.stock_register);
        let rows: ODataList<BTreeMap<String, Value>> = self.get_json(&path, &[]).await?;
        let resource = format!("{}Balance", self.objects.stock_resource);
        let mut out = Vec::new();
        for row in rows.value {
            let item = row
                .get(&self.objects.stock_item)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let quantity = match row.get(&resource) {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                Some(Value::String(s)) => s.parse().unwrap_or(0.0),
                _ => continue,
            };
            out.push(StockBalance { item, quantity });
        }
        Ok(out)
    }
}

/// Kopecks as the JSON number 1C's `Число` attributes take.
fn minor_to_number(minor: i64) -> Value {
    if minor % 100 == 0 {
        json!(minor / 100)
    } else {
        serde_json::Number::from_f64(minor as f64 / 100.0)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::DeliveryError;

    #[test]
    fn errors_are_sorted_by_what_retrying_can_do() {
        let body = r#"{"odata.error":{"code":"-1","message":{"lang":"ru","value":"Произошла внутренняя ошибка OData сервиса"}}}"#;
        let e = classify(StatusCode::INTERNAL_SERVER_ERROR, body);
        assert!(e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("внутренняя ошибка"));
        let e = classify(
            StatusCode::NOT_FOUND,
            r#"{"odata.error":{"code":"0","message":{"lang":"ru-RU","value":"не найдено"}}}"#,
        );
        assert!(
            e.kind() == Kind::Permanent && e.status() == Some(404),
            "{e:?}"
        );
        let e = classify(StatusCode::UNAUTHORIZED, "");
        assert!(e.is_auth());
        let e = classify(StatusCode::BAD_REQUEST, "<html>oops</html>");
        assert!(e.to_string().contains("oops"));
    }

    fn kind(status: StatusCode) -> Kind {
        classify(status, "").kind()
    }

    #[test]
    fn every_5xx_passes() {
        for s in [
            StatusCode::NOT_IMPLEMENTED,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        ] {
            assert_eq!(kind(s), Kind::Transient { retry_after: None }, "{s}");
        }
    }

    #[test]
    fn a_402_is_refused_not_payment_required() {
        assert_eq!(kind(StatusCode::PAYMENT_REQUIRED), Kind::Permanent);
    }

    #[test]
    fn a_408_and_a_425_are_refused() {
        assert_eq!(kind(StatusCode::REQUEST_TIMEOUT), Kind::Permanent);
        assert_eq!(kind(StatusCode::TOO_EARLY), Kind::Permanent);
    }

    #[test]
    fn the_queue_gets_the_status_1c_gave() {
        let e = classify(StatusCode::FORBIDDEN, "");
        assert_eq!(
            DeliveryError::from(e),
            DeliveryError::Auth {
                message: "1C answered HTTP 403: ".into(),
                http_status: Some(403),
            }
        );
        let e = classify(StatusCode::TOO_MANY_REQUESTS, "");
        assert_eq!(
            DeliveryError::from(e),
            DeliveryError::Transient {
                message: "1C answered HTTP 429: ".into(),
                retry_after: None,
                http_status: Some(429),
            }
        );
    }

    #[test]
    fn sums_are_numbers() {
        assert_eq!(minor_to_number(150_000), json!(1500));
        assert_eq!(minor_to_number(150_050), json!(1500.5));
    }
}
