//! Client cards (admin API, user token): what an import reads and writes.

use super::*;

// ---------------------------------------------------------------------------------------------
// Client cards (admin API, user token): what an import reads and writes
// ---------------------------------------------------------------------------------------------

/// A client card of the salon, as the import matches against it: values as YClients holds
/// them (the phone as digits, whether it came as a number or a string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalonClient {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A new client card. YClients holds one phone (required) and one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub name: String,
    /// Digits with the country code, no plus: `79123456789`.
    pub phone: String,
    pub email: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireClient {
    pub(super) id: Value,
    #[serde(default)]
    pub(super) name: Value,
    #[serde(default)]
    pub(super) phone: Value,
    #[serde(default)]
    pub(super) email: Value,
}

impl WireClient {
    pub(super) fn into_salon_client(self) -> Option<SalonClient> {
        let text = |v: &Value| Some(str_of(v).trim().to_owned()).filter(|s| !s.is_empty());
        Some(SalonClient {
            id: id_of(&self.id)?,
            name: text(&self.name).unwrap_or_default(),
            phone: text(&self.phone),
            email: text(&self.email),
        })
    }
}

/// Fields of a card `PUT /client/{company}/{id}` takes, as documented. Whether the call
/// replaces the card or merges into it is not said, so an update sends every one of them as
/// read. `spent` and `balance` are left out: they are described as values at the time the
/// client is added, and money is not ours to rewrite.
pub(super) const CLIENT_WRITABLE: [&str; 13] = [
    "name",
    "surname",
    "patronymic",
    "phone",
    "email",
    "sex_id",
    "importance_id",
    "discount",
    "card",
    "birth_date",
    "comment",
    "sms_check",
    "sms_not",
];

impl Yclients {
    /// Whether the admin methods (client cards, records by id) can be called.
    pub fn has_user_token(&self) -> bool {
        self.user_token.is_some()
    }

    /// One page of `POST /company/{id}/clients/search` (200 a page, ordered by id), and the
    /// total the server counts.
    pub(super) async fn clients_search(
        &self,
        page: u32,
        filters: Vec<Value>,
    ) -> Result<(Vec<SalonClient>, Option<u64>), BookingError> {
        let body = json!({
            "page": page,
            "page_size": MAX_PAGE,
            "fields": ["id", "name", "phone", "email"],
            "order_by": "id",
            "order_by_direction": "ASC",
            "operation": "AND",
            "filters": filters,
        });
        let answer = self
            .call(
                Endpoint::ClientsSearch,
                Method::POST,
                &format!("/company/{}/clients/search", self.company_id),
                &[],
                Some(&body),
                true,
            )
            .await?;
        let total = answer.meta.get("total_count").and_then(i64_of);
        let items: Vec<Value> = decode(Endpoint::ClientsSearch, answer.data)?;
        let clients = items
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<WireClient>(v) {
                Ok(c) => c.into_salon_client(),
                Err(e) => {
                    // Left out, a client could be added a second time: say so loudly.
                    tracing::warn!(error = %e, "unreadable YClients client left out");
                    None
                }
            })
            .collect();
        Ok((clients, total.and_then(|t| u64::try_from(t).ok())))
    }

    /// Every client card of the salon, 200 a request.
    pub async fn all_clients(&self) -> Result<Vec<SalonClient>, BookingError> {
        let mut out = Vec::new();
        let mut previous_first: Option<String> = None;
        for page in 1u32.. {
            let (items, total) = self.clients_search(page, Vec::new()).await?;
            let n = items.len();
            // A server ignoring `page` would loop forever on full pages.
            let first = items.first().map(|c| c.id.clone());
            if first.is_some() && first == previous_first {
                return Err(BookingError::unavailable(format!(
                    "YClients clients/search answered page {page} with the previous page"
                )));
            }
            previous_first = first;
            out.extend(items);
            let seen_all = total.is_some_and(|t| out.len() as u64 >= t);
            if n < MAX_PAGE as usize || seen_all {
                break;
            }
        }
        Ok(out)
    }

    /// Cards the salon's quick search finds for a phone's digits or an email (the first 200).
    /// What the quick search compares is not documented: callers check every hit themselves.
    pub async fn quick_search_clients(&self, text: &str) -> Result<Vec<SalonClient>, BookingError> {
        let filters = vec![json!({"type": "quick_search", "state": {"value": text}})];
        Ok(self.clients_search(1, filters).await?.0)
    }

    /// `POST /clients/{company}`: the new card's id.
    pub async fn create_client(&self, client: &NewClient) -> Result<String, BookingError> {
        let mut body = json!({"name": client.name, "phone": client.phone});
        if let Some(e) = &client.email {
            body["email"] = json!(e);
        }
        if let Some(b) = client.birth_date {
            body["birth_date"] = json!(b.format("%Y-%m-%d").to_string());
        }
        if let Some(c) = &client.comment {
            body["comment"] = json!(c);
        }
        let answer = self
            .call(
                Endpoint::ClientCreate,
                Method::POST,
                &format!("/clients/{}", self.company_id),
                &[],
                Some(&body),
                true,
            )
            .await?;
        answer
            .data
            .get("id")
            .and_then(id_of)
            .ok_or_else(|| BookingError::unavailable("YClients created a client without an id"))
    }

    /// Gives a card the phone and/or email it lacks: `GET /client/{company}/{id}`, then
    /// `PUT` with every writable field as read and ours added.
    pub async fn complete_client(
        &self,
        id: &str,
        phone: Option<&str>,
        email: Option<&str>,
    ) -> Result<(), BookingError> {
        let path = format!("/client/{}/{}", self.company_id, id);
        let card = self
            .call(Endpoint::ClientGet, Method::GET, &path, &[], None, true)
            .await?
            .data;
        let mut body = serde_json::Map::new();
        for key in CLIENT_WRITABLE {
            let v = card.get(key).cloned().unwrap_or(Value::Null);
            let keep = match (key, &v) {
                (_, Value::Null) => false,
                // No birthday reads as `0`; an empty one as "".
                ("birth_date", Value::String(s)) => !s.trim().is_empty(),
                ("birth_date", _) => false,
                ("phone", other) => !str_of(other).trim().is_empty(),
                _ => true,
            };
            if keep {
                let v = if key == "phone" { json!(str_of(&v)) } else { v };
                body.insert(key.to_owned(), v);
            }
        }
        // Categories read as objects; the update takes their ids as `labels`.
        if let Some(ids) = card.get("categories").and_then(Value::as_array) {
            let ids: Vec<Value> = ids.iter().filter_map(|c| c.get("id").cloned()).collect();
            if !ids.is_empty() {
                body.insert("labels".into(), Value::Array(ids));
            }
        }
        if let Some(fields) = card.get("custom_fields").filter(|f| f.is_object()) {
            body.insert("custom_fields".into(), fields.clone());
        }
        if let Some(p) = phone {
            body.insert("phone".into(), json!(p));
        }
        if let Some(e) = email {
            body.insert("email".into(), json!(e));
        }
        self.call(
            Endpoint::ClientUpdate,
            Method::PUT,
            &path,
            &[],
            Some(&Value::Object(body)),
            true,
        )
        .await?;
        Ok(())
    }
}

/// Turns an HTTP status and body into data or the matching `BookingError`.
pub(super) fn map_answer(
    endpoint: Endpoint,
    status: StatusCode,
    body: Value,
) -> Result<Answer, BookingError> {
    let message = error_message(&body);
    let name = endpoint.name();
    if status.is_success() {
        // HTTP 200 with `success: false` is an error too (seen in SDK tests).
        if body.get("success").and_then(Value::as_bool) == Some(false)
            || body.get("errors").is_some_and(|e| !e.is_null())
        {
            return Err(classify_refusal(name, status, &body, message));
        }
        let (data, meta) = match &body {
            Value::Object(map) if map.contains_key("success") => (
                map.get("data").cloned().unwrap_or(Value::Null),
                map.get("meta").cloned().unwrap_or(Value::Null),
            ),
            other => (other.clone(), Value::Null),
        };
        return Ok(Answer { data, meta });
    }
    let code = status.as_u16();
    if is_partner_id_refusal(&message) {
        return Err(Failure::auth(format!(
            "YClients {name}: {message} (set booking.yclients.partner_id)"
        ))
        .with_status(code)
        .into());
    }
    match code {
        404 => Err(BookingError::NotFound(format!(
            "YClients {name}: {message}"
        ))),
        401 | 408 => Err(Failure::from_status(
            &ByStatus,
            code,
            None,
            None,
            format!("YClients {name}: {message}"),
        )
        .into()),
        // Their refusal of our data: a slot gone, or a request that will fail again.
        400..=499 => Err(classify_refusal(name, status, &body, message)),
        _ => Err(Failure::from_status(
            &ByStatus,
            code,
            None,
            None,
            format!("YClients {name}: HTTP {code}: {message}"),
        )
        .into()),
    }
}

/// The refusal a live account gave admin calls sent without `X-Partner-Id` (403, Russian), and
/// Altegio's English twin (401).
pub fn is_partner_id_refusal(message: &str) -> bool {
    message.contains("Не указан идентификатор партнера")
        || message.contains("Partner ID not specified")
}

pub(super) fn classify_refusal(
    name: &str,
    status: StatusCode,
    body: &Value,
    message: String,
) -> BookingError {
    let code = error_code(body);
    // 433 "time taken or not working time", 436 "no free master for any-master": both mean the
    // slot shown is gone. The older docs' body has only the message, so read that too.
    let taken_words = ["уже занято", "нельзя записаться"];
    if matches!(code, Some(433 | 436)) || taken_words.iter().any(|w| message.contains(w)) {
        return BookingError::SlotTaken;
    }
    let failure = Failure::permanent(format!(
        "YClients {name}: HTTP {}{}: {message}",
        status.as_u16(),
        code.map(|c| format!(" code {c}")).unwrap_or_default()
    ))
    .with_status(status.as_u16());
    match code {
        Some(code) => failure.with_code(code.to_string()).into(),
        None => failure.into(),
    }
}

/// The docs give the online-booking codes (431–438) without the key that carries them, so look
/// in the likely places.
pub(super) fn error_code(body: &Value) -> Option<i64> {
    let candidates = [
        body.get("code"),
        body.pointer("/meta/code"),
        body.pointer("/data/code"),
        body.pointer("/errors/code"),
        body.pointer("/meta/errors/0/code"),
        body.pointer("/errors/0/code"),
    ];
    candidates.into_iter().flatten().find_map(i64_of)
}

pub(super) fn error_message(body: &Value) -> String {
    [
        body.pointer("/meta/message"),
        body.pointer("/errors/message"),
        body.get("message"),
    ]
    .into_iter()
    .flatten()
    .find_map(|m| m.as_str().map(str::to_owned))
    .unwrap_or_else(|| match body {
        Value::String(s) => s.clone(),
        Value::Null => "no body".into(),
        other => other.to_string().chars().take(300).collect(),
    })
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    data: Value,
) -> Result<T, BookingError> {
    // `[]` where an object is expected is PHP's empty map; an empty list for a list.
    serde_json::from_value(data).map_err(|e| {
        BookingError::unavailable(format!(
            "YClients {} answered in an unexpected shape: {e}",
            endpoint.name()
        ))
    })
}
