//! What travels on the wire: PHP-style bracket encoding of parameters out, and the private
//! JSON shapes Bitrix24 answers with (unknown fields ignored).

use super::*;

// -------------------------------------------------------------------- encoding

/// PHP-style bracket encoding of nested parameters (`fields[PHONE][0][VALUE]=…`): what a
/// `batch` command's query string and a form body carry.
pub(super) fn php_query(params: &Value) -> String {
    let mut pairs = Vec::new();
    flatten(None, params, &mut pairs);
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub(super) fn flatten(prefix: Option<&str>, value: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| match prefix {
        Some(p) => format!("{p}[{k}]"),
        None => k.to_string(),
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(Some(&key(k)), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(Some(&key(&i.to_string())), v, out);
            }
        }
        scalar => {
            if let Some(p) = prefix {
                let text = match scalar {
                    Value::String(s) => s.clone(),
                    Value::Bool(true) => "Y".into(),
                    Value::Bool(false) => "N".into(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push((p.to_string(), text));
            }
        }
    }
}

/// Ids arrive as numbers from adds and as strings from reads.
pub(super) fn id_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn entity_id(id: &str) -> Result<i64, CrmError> {
    id.trim()
        .parse()
        .map_err(|_| CrmError::permanent(format!("{id:?} is not a Bitrix24 id")))
}

/// Kopecks as Bitrix24 money, `"1500.00"`: a decimal string, never a float.
pub(super) fn money(kopecks: i64) -> String {
    let sign = if kopecks < 0 { "-" } else { "" };
    let abs = kopecks.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The ways a manager may have typed this number. `crm.duplicate.findbycomm` compares whole
/// numbers, so a Russian number is looked up in its +7, 7, 8 and ten-digit forms.
pub(super) fn phone_variants(phone: &Phone) -> Vec<String> {
    let e164 = phone.as_str().to_string();
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    let mut out = vec![e164.clone(), digits.clone()];
    if digits.len() == 11 && digits.starts_with('7') {
        let national = &digits[1..];
        let (a, b, c, d) = (
            &national[..3],
            &national[3..6],
            &national[6..8],
            &national[8..],
        );
        out.extend([
            format!("8{national}"),
            national.to_string(),
            format!("+7 {a} {b}-{c}-{d}"),
            format!("+7 ({a}) {b}-{c}-{d}"),
            format!("8 ({a}) {b}-{c}-{d}"),
            format!("8 {a} {b} {c} {d}"),
            format!("8 {a} {b}-{c}-{d}"),
            format!("8-{a}-{b}-{c}-{d}"),
        ]);
    }
    out.dedup();
    out.truncate(MAX_DUPLICATE_VALUES);
    out
}

/// Compares secrets in time independent of where they differ.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// -------------------------------------------------------------------- wire types (in)

#[derive(Deserialize, Default)]
pub(super) struct ErrorIn {
    #[serde(default, deserialize_with = "string_or_null")]
    pub(super) error: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub(super) error_description: String,
}

/// `error` is a string, sometimes empty, sometimes a number (`100`) or absent.
pub(super) fn string_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(text_of(&v).unwrap_or_default())
}

#[derive(Deserialize)]
pub(super) struct TokenIn {
    pub(super) access_token: String,
    pub(super) refresh_token: String,
    pub(super) expires_in: i64,
}

#[derive(Deserialize)]
pub(super) struct BatchIn {
    #[serde(default)]
    pub(super) result: Value,
    #[serde(default)]
    pub(super) result_error: Value,
}

#[derive(Deserialize)]
pub(super) struct MultiIn {
    #[serde(rename = "VALUE", default)]
    pub(super) value: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ContactIn {
    #[serde(rename = "ID")]
    pub(super) id: Value,
    #[serde(rename = "PHONE", default, deserialize_with = "null_as_empty")]
    pub(super) phone: Vec<MultiIn>,
    #[serde(rename = "EMAIL", default, deserialize_with = "null_as_empty")]
    pub(super) email: Vec<MultiIn>,
}

/// A multiple field the contact has no value in comes back as `null` when it is selected by
/// name: that is "none", not a reason to skip the contact (and create a duplicate).
pub(super) fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<MultiIn>, D::Error> {
    Ok(Option::<Vec<MultiIn>>::deserialize(d)?.unwrap_or_default())
}

impl ContactIn {
    pub(super) fn phones(&self) -> impl Iterator<Item = Phone> + '_ {
        self.phone
            .iter()
            .filter_map(|m| m.value.as_deref())
            .filter_map(|v| Phone::parse(v).ok())
    }
    pub(super) fn emails(&self) -> impl Iterator<Item = Email> + '_ {
        self.email
            .iter()
            .filter_map(|m| m.value.as_deref())
            .filter_map(|v| Email::parse(v).ok())
    }
}

/// A contact as an import reads it (`IMPORT_SELECT`). Scalars are read leniently: a contact
/// left out of the matching would be created a second time.
#[derive(Deserialize)]
pub(super) struct ImportContactIn {
    #[serde(rename = "ID")]
    pub(super) id: Value,
    #[serde(rename = "NAME", default)]
    pub(super) name: Option<Value>,
    #[serde(rename = "LAST_NAME", default)]
    pub(super) last_name: Option<Value>,
    #[serde(rename = "PHONE", default, deserialize_with = "null_as_empty")]
    pub(super) phone: Vec<MultiIn>,
    #[serde(rename = "EMAIL", default, deserialize_with = "null_as_empty")]
    pub(super) email: Vec<MultiIn>,
    #[serde(rename = "ORIGINATOR_ID", default)]
    pub(super) originator_id: Option<Value>,
    #[serde(rename = "ORIGIN_ID", default)]
    pub(super) origin_id: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct EntityIn {
    #[serde(rename = "ID")]
    pub(super) id: Value,
    #[serde(rename = "TITLE", default)]
    pub(super) title: Option<String>,
    #[serde(rename = "STAGE_ID", default)]
    pub(super) stage_id: Option<String>,
    #[serde(rename = "STATUS_ID", default)]
    pub(super) status_id: Option<String>,
    #[serde(rename = "CATEGORY_ID", default)]
    pub(super) category_id: Option<Value>,
    #[serde(rename = "OPPORTUNITY", default)]
    pub(super) opportunity: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct StatusIn {
    #[serde(rename = "ID")]
    pub(super) id: Value,
    #[serde(rename = "STATUS_ID")]
    pub(super) status_id: String,
    #[serde(rename = "NAME", default)]
    pub(super) name: Option<String>,
    #[serde(rename = "EXTRA", default)]
    pub(super) extra: Option<StatusExtraIn>,
}

#[derive(Deserialize)]
pub(super) struct StatusExtraIn {
    #[serde(rename = "SEMANTICS", default)]
    pub(super) semantics: Option<String>,
}
