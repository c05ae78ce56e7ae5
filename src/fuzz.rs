//! Entry points for fuzzing: one per parser of outside input, each taking arbitrary bytes the
//! way the parser meets them (a webhook body, an uploaded document, an import file, a config).
//! None may panic, and each returns in time bounded by its input, which is cut to the size the
//! server would accept. The cargo-fuzz targets in `fuzz/` and the `fuzz_smoke` test call these
//! same functions, so a crash found by one is replayed by the other.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{TimeZone, Utc};
use secrecy::SecretString;

/// Webhook bodies the router accepts (axum's default limit).
const WEBHOOK_BODY: usize = 2 << 20;
/// Landing-form bodies (`forms::MAX_BODY`).
const FORM_BODY: usize = 64 << 10;
/// Far more than a header, a cell or a config holds; keeps quadratic corners of a parser out of
/// the fuzzer's way without hiding them from a real input of that size.
const TEXT: usize = 64 << 10;
/// Import files and CommerceML documents are large in real life; fuzzing needs no more.
const DOCUMENT: usize = 4 << 20;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;

fn cut(data: &[u8], max: usize) -> &[u8] {
    &data[..data.len().min(max)]
}

fn text(data: &[u8], max: usize) -> String {
    String::from_utf8_lossy(cut(data, max)).into_owned()
}

/// `POST /webhooks/yclients/…`: the events and the inbox key.
pub fn yclients_webhook(data: &[u8]) {
    let data = cut(data, WEBHOOK_BODY);
    let _ = crate::booking::yclients::parse_webhook(data, TZ);
    let _ = crate::booking::yclients::delivery_key(&String::from_utf8_lossy(data));
}

/// `POST /webhooks/amocrm/…`: a PHP-style form body.
pub fn amocrm_webhook(data: &[u8]) {
    let data = cut(data, WEBHOOK_BODY);
    let _ = crate::crm::amocrm::parse_webhook(data);
    let _ = crate::crm::amocrm::delivery_key(&String::from_utf8_lossy(data));
}

/// `POST /webhooks/bitrix24/…`: a form or JSON event, its token stripped for storage and put
/// back for processing, the way the inbox does it.
pub fn bitrix24_event(data: &[u8]) {
    let body = text(data, WEBHOOK_BODY);
    let token = SecretString::from("fuzz-application-token");
    let _ = crate::crm::bitrix24::parse_event(body.as_bytes(), &token);
    let stored = crate::crm::bitrix24::strip_token(&body, &token);
    let back = crate::crm::bitrix24::restore_token(&stored, &token);
    let _ = crate::crm::bitrix24::parse_event(back.as_bytes(), &token);
    let _ = crate::crm::bitrix24::delivery_key(&body);
}

/// `POST /webhooks/max/…`: an update or a list of them, and what the bot reads from each.
pub fn max_update(data: &[u8]) {
    let data = cut(data, WEBHOOK_BODY);
    if let Ok(updates) = crate::messenger::max::parse_webhook(&HeaderMap::new(), data, None) {
        for update in &updates {
            let _ = update.update_type();
            let _ = crate::messenger::max::incoming(update);
        }
    }
    let _ = crate::messenger::max::delivery_key(&String::from_utf8_lossy(data));
}

/// A Telegram update (or a `getUpdates` answer holding several) and the chat event read from it.
pub fn telegram_update(data: &[u8]) {
    use teloxide::types::{Update, UpdateKind};
    let data = cut(data, WEBHOOK_BODY);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let updates = match value {
        serde_json::Value::Object(mut map) if map.contains_key("result") => {
            match map.remove("result") {
                Some(serde_json::Value::Array(items)) => items,
                _ => return,
            }
        }
        other => vec![other],
    };
    for item in updates {
        let Ok(update) = serde_json::from_value::<Update>(item) else {
            continue;
        };
        match &update.kind {
            UpdateKind::Message(msg) => {
                let _ = crate::messenger::telegram::message_event(msg);
                let _ = msg.from.as_ref().map(|u| u.language_code.clone());
            }
            UpdateKind::CallbackQuery(query) => {
                let _ = query.message.as_ref().map(|m| m.chat().id);
                let _ = query.regular_message().map(|m| m.id);
                if let Some(data) = &query.data {
                    let _ = crate::messenger::telegram::text_event(data);
                }
            }
            _ => {}
        }
    }
}

/// An answer of Dikidi's booking widget, through every reader of one.
pub fn dikidi_answer(data: &[u8]) {
    crate::booking::dikidi::read_every_answer(cut(data, WEBHOOK_BODY), TZ);
}

/// GetCourse's "call URL" step: the query string, then the body after the first `\n`.
pub fn getcourse_notice(data: &[u8]) {
    let data = text(data, WEBHOOK_BODY);
    let (query, body) = data.split_once('\n').unwrap_or((&data, ""));
    let mut headers = BTreeMap::new();
    headers.insert(
        crate::sync::inbox::QUERY_HEADER.to_string(),
        query.to_string(),
    );
    headers.insert(
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    );
    let message = crate::sync::inbox::InboxMessage {
        id: 1,
        business_id: crate::domain::BusinessId::default_id(),
        source: "getcourse".into(),
        dedup_key: String::new(),
        headers,
        body: body.to_string(),
        received_at: Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
    };
    let params = crate::school::inbox::parameters(&message);
    let Some(school) = school() else {
        return;
    };
    let inbox = crate::school::inbox::GetCourseInbox {
        school: school.clone(),
        accounting: true,
    };
    if let Ok(Some(notice)) = inbox.notice(&params, message.id) {
        let _ = notice.amount_minor();
        let _ = notice.amount();
        let _ = inbox.invoice(&notice);
    }
}

/// A school with two courses and GetCourse's usual paid statuses, so course matching and
/// group checks run.
fn school() -> Option<&'static crate::school::config::SchoolConfig> {
    static SCHOOL: std::sync::OnceLock<Option<crate::school::config::SchoolConfig>> =
        std::sync::OnceLock::new();
    SCHOOL
        .get_or_init(|| {
            let value = serde_json::json!({
                "courses": [
                    {"key": "python", "title": "Python с нуля", "alfacrm_group_ids": [7, 8],
                     "getcourse_offer_code": "PY-1"},
                    {"key": "english", "title": "English"}
                ],
                "getcourse": {
                    "account_url": "https://school.getcourse.ru",
                    "key": "fuzz-getcourse-key-0123456789"
                }
            });
            serde_json::from_value(value).ok()
        })
        .as_ref()
}

/// `POST /forms/{name}`: the first byte picks JSON or urlencoded and a proxy chain; the rest is
/// `X-Forwarded-For` up to the first `\n`, then the body.
pub fn form_post(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let rest = cut(rest, FORM_BODY + 1024);
    let (forwarded, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let body = cut(body, FORM_BODY);
    let mut headers = HeaderMap::new();
    let content_type = if selector & 1 == 1 {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_bytes(forwarded) {
        headers.insert("x-forwarded-for", v);
    }
    if let (Ok(fields), Some(school)) = (crate::http::forms::fields(&headers, body), school()) {
        let fields: HashMap<String, String> = fields;
        let _ = crate::http::forms::application(school, "landing", &fields, &headers);
    }
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let trusted: Vec<ipnet::IpNet> = if selector & 2 == 2 {
        ["10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    } else {
        Vec::new()
    };
    let client = crate::http::forms::forwarded_client(peer, &hops, &trusted);
    let _ = crate::http::forms::limit_key(client);
}

/// A CommerceML document as 1C uploads it (any declared encoding).
pub fn commerceml_document(data: &[u8]) {
    let data = cut(data, DOCUMENT);
    let _ = crate::accounting::commerceml::decode(data);
    let _ = crate::accounting::commerceml::parse(data);
}

/// A zip 1C uploads: unpacked to disk under small limits, each picked document parsed.
pub fn commerceml_zip(data: &[u8]) {
    let data = cut(data, DOCUMENT);
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let archive = dir.path().join("upload.zip");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    let mut paths = Vec::new();
    let mut n = 0;
    let mut next_path = || {
        n += 1;
        let path = dir.path().join(format!("entry-{n}"));
        paths.push(path.clone());
        path
    };
    let limits = crate::accounting::exchange::UnzipLimits {
        entries: 64,
        bytes: 8 << 20,
    };
    let unpacked = crate::accounting::exchange::unzip(
        &archive,
        crate::accounting::exchange::wanted,
        false,
        limits,
        &mut next_path,
    );
    if unpacked.is_ok() {
        for path in &paths {
            let _ = crate::accounting::commerceml::parse_file(path);
        }
    }
}

/// `zapis import` of a CSV file: rows read, then each normalised.
pub fn import_csv(data: &[u8]) {
    let data = cut(data, DOCUMENT);
    if let Ok(rows) = crate::import::read::csv(data, &[]) {
        normalise_rows(rows);
    }
}

/// `zapis import` of an XLSX file.
pub fn import_xlsx(data: &[u8]) {
    let data = cut(data, DOCUMENT);
    if let Ok(rows) = crate::import::read::xlsx(data, &[]) {
        normalise_rows(rows);
    }
}

fn normalise_rows(rows: Vec<crate::import::RawRecord>) {
    let mut problems = Vec::new();
    for row in rows {
        let _ = crate::import::normalise::record(row, &mut problems);
    }
}

/// A phone as a form, a messenger contact or an import cell gives it.
pub fn phone(data: &[u8]) {
    let input = text(data, TEXT);
    if let Ok(phone) = crate::normalize::Phone::parse(&input) {
        let _ = phone.masked();
        let _ = phone.is_mobile();
    }
    let _ = crate::normalize::is_mobile_phone(&input);
    let _ = crate::normalize::mask_phone(&input);
    for entry in crate::normalize::parse_phones(&input).phones {
        let _ = entry;
    }
}

/// An e-mail address, and the person-name and birthday cells read beside it on import.
pub fn email(data: &[u8]) {
    use crate::normalize::Email;
    let input = text(data, TEXT);
    for email in [Email::parse(&input), Email::parse_ascii(&input)]
        .into_iter()
        .flatten()
    {
        let _ = email.masked();
        let _ = email.domain();
        let _ = email.unicode();
        let _ = email.likely_typo();
    }
    let _ = crate::normalize::unicode_email(&input);
    let _ = crate::import::normalise::person_name(&input);
    let _ = crate::import::normalise::birthday(&input);
}

/// `zapis.toml`, without the environment.
pub fn config(data: &[u8]) {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    let input = text(data, TEXT);
    let _ = crate::config::Config::from_figment(Figment::from(Toml::string(&input)));
}

/// An entry point: arbitrary bytes in, nothing out.
pub type Entry = fn(&[u8]);

/// Every entry point by name, for the smoke test and the fuzz targets' docs.
pub const TARGETS: &[(&str, Entry)] = &[
    ("yclients_webhook", yclients_webhook),
    ("amocrm_webhook", amocrm_webhook),
    ("bitrix24_event", bitrix24_event),
    ("max_update", max_update),
    ("telegram_update", telegram_update),
    ("dikidi_answer", dikidi_answer),
    ("getcourse_notice", getcourse_notice),
    ("form_post", form_post),
    ("commerceml_document", commerceml_document),
    ("commerceml_zip", commerceml_zip),
    ("import_csv", import_csv),
    ("import_xlsx", import_xlsx),
    ("phone", phone),
    ("email", email),
    ("config", config),
];
