//! 1C client exports: the CommerceML `Контрагенты` XML (UTF-8 or the windows-1251 its
//! declaration names) and the OData JSON list of `Catalog_Контрагенты`. Shapes:
//! ../shared/reference/school-accounting-apis.md part 3; what is relied on: docs/import.md.

use quick_xml::events::Event;
use serde_json::Value;

use super::{ImportError, RawDate, RawRecord};

/// Decodes an XML file by the encoding its declaration names (1C writes windows-1251).
fn decode_xml(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(200)
        .map(|&b| (b as char).to_ascii_lowercase())
        .collect();
    if head.contains("windows-1251") || head.contains("cp1251") {
        encoding_rs::WINDOWS_1251.decode(bytes).0.into_owned()
    } else {
        super::read::decode(bytes)
    }
}

/// Every `Контрагент` directly under a `Контрагенты` element, wherever that list sits
/// (a client export, or the buyers of order documents). Representatives nested inside a
/// counterparty are not clients of their own.
pub fn commerceml(bytes: &[u8]) -> Result<Vec<RawRecord>, ImportError> {
    let text = decode_xml(bytes);
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut stack: Vec<String> = Vec::new();
    // Depth at which the current counterparty starts, and what it collected so far.
    let mut current: Option<(usize, RawRecord)> = None;
    let mut contact: (Option<String>, Option<String>) = (None, None);
    // Text of the innermost open element: text events and entity references in between.
    let mut text = String::new();
    let mut out = Vec::new();
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| {
            ImportError::Format(format!("1C XML at byte {}: {e}", reader.buffer_position()))
        })?;
        match event {
            Event::Start(e) => {
                let name = AsRef::<str>::as_ref(&e.name()).to_string();
                if name == "Контрагент"
                    && current.is_none()
                    && stack.last().is_some_and(|p| p == "Контрагенты")
                {
                    count += 1;
                    current = Some((
                        stack.len() + 1,
                        RawRecord {
                            row: count,
                            ..RawRecord::default()
                        },
                    ));
                }
                stack.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t),
            Event::GeneralRef(r) => {
                let name = r.into_inner();
                let resolved = match name.as_ref() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = resolved {
                    text.push(c);
                }
            }
            Event::End(_) => {
                let value = std::mem::take(&mut text).trim().to_string();
                if let Some((depth, record)) = &mut current {
                    let path: Vec<&str> = stack[*depth..].iter().map(String::as_str).collect();
                    match path.as_slice() {
                        ["ПолноеНаименование"] => record.full_name = Some(value),
                        ["Наименование"] if record.full_name.is_none() => {
                            record.full_name = Some(value)
                        }
                        ["Фамилия"] => record.last_name = Some(value),
                        ["Имя"] => record.first_name = Some(value),
                        ["Отчество"] => record.middle_name = Some(value),
                        ["ДатаРождения"] => {
                            record.birthday = Some(RawDate::Text(value))
                        }
                        ["Комментарий"] if !value.is_empty() => {
                            record.comment = Some(value)
                        }
                        ["Контакты", "Контакт", "Тип"] => contact.0 = Some(value),
                        ["Контакты", "Контакт", "Значение"] => {
                            contact.1 = Some(value)
                        }
                        ["Контакты", "Контакт"] => {
                            push_contact(record, std::mem::take(&mut contact))
                        }
                        _ => {}
                    }
                }
                stack.pop();
                if current
                    .as_ref()
                    .is_some_and(|(depth, _)| stack.len() < *depth)
                    && let Some((_, record)) = current.take()
                {
                    out.push(record);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if count == 0 {
        return Err(ImportError::Format(
            "1C XML: no Контрагенты/Контрагент elements found".into(),
        ));
    }
    Ok(out)
}

/// Files a contact by its type (`Телефон рабочий`, `Почта`, `Электронная почта`…), or by
/// whether it looks like an email when the type says nothing.
fn push_contact(record: &mut RawRecord, (kind, value): (Option<String>, Option<String>)) {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return;
    };
    let kind = kind.unwrap_or_default().to_lowercase();
    if kind.contains("почт")
        || kind.contains("mail")
        || (!kind.contains("тел") && value.contains('@'))
    {
        record.emails.push(value);
    } else if kind.contains("тел") || kind.contains("phone") || kind.is_empty() {
        record.phones.push(value);
    }
}

/// `{"value": [...]}` as OData answers, or a bare array of the same objects. Folders and
/// objects marked for deletion are not clients.
pub fn odata_json(bytes: &[u8]) -> Result<Vec<RawRecord>, ImportError> {
    let text = super::read::decode(bytes);
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| ImportError::Format(format!("1C OData JSON: {e}")))?;
    let items = match &doc {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("value") {
            Some(Value::Array(items)) => items,
            // A single object, as `Catalog_Контрагенты(guid'…')` returns it.
            _ => std::slice::from_ref(&doc),
        },
        _ => {
            return Err(ImportError::Format(
                "1C OData JSON: expected an object with `value` or an array".into(),
            ));
        }
    };
    let str_of = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.get("IsFolder").and_then(Value::as_bool) == Some(true)
            || item.get("DeletionMark").and_then(Value::as_bool) == Some(true)
        {
            continue;
        }
        let mut r = RawRecord {
            row: i + 1,
            full_name: str_of(item, "Description").or_else(|| str_of(item, "НаименованиеПолное")),
            birthday: str_of(item, "ДатаРождения").map(RawDate::Text),
            comment: str_of(item, "Комментарий"),
            ..RawRecord::default()
        };
        for key in ["Телефон", "НомерТелефона"] {
            if let Some(p) = str_of(item, key) {
                r.phones.push(p);
            }
        }
        for key in ["ЭлектроннаяПочта", "АдресЭП", "Email"] {
            if let Some(e) = str_of(item, key) {
                r.emails.push(e);
            }
        }
        // The tabular section of contact details: one row per phone or address.
        for row in item
            .get("КонтактнаяИнформация")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = str_of(row, "Тип").unwrap_or_default().to_lowercase();
            if kind.contains("телефон") {
                if let Some(p) =
                    str_of(row, "НомерТелефона").or_else(|| str_of(row, "Представление"))
                {
                    r.phones.push(p);
                }
            } else if kind.contains("почт")
                && let Some(e) = str_of(row, "АдресЭП").or_else(|| str_of(row, "Представление"))
            {
                r.emails.push(e);
            }
        }
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/contracts/onec")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn reads_the_buyer_of_the_official_windows_1251_order_samples() {
        let from = commerceml(&contract("sdk-commerceml-from.xml")).unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].last_name.as_deref(), Some("Иванов"));
        assert_eq!(from[0].first_name.as_deref(), Some("admin"));
        assert_eq!(from[0].full_name.as_deref(), Some("admin"));
        let to = commerceml(&contract("sdk-commerceml-to.xml")).unwrap();
        // The representative nested inside is not a client of its own.
        assert_eq!(to.len(), 1);
        assert_eq!(to[0].full_name.as_deref(), Some("Петр Петров"));
        assert_eq!(to[0].last_name.as_deref(), Some("Петров"));
        // A catalogue has no counterparties: a clear error, not an empty import.
        assert!(commerceml(&contract("sdk-commerceml-import.xml")).is_err());
    }

    #[test]
    fn reads_the_odata_contracts() {
        let list = odata_json(&contract("odata-catalog-kontragenty-list.response.json")).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].full_name.as_deref(), Some("ООО «Ромашка»"));
        let one = odata_json(&contract("odata-catalog-kontragenty-get.response.json")).unwrap();
        assert_eq!(one[0].full_name.as_deref(), Some("Чебоксарец"));
        assert_eq!(one[0].comment.as_deref(), Some("коммент"));
    }
}
