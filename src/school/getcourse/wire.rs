//! GetCourse's shapes: who an import is about and its answer, successful only when both
//! levels say so.

use serde_json::Value;

use crate::school::SchoolError;

/// Who the import is about.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct GcUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
}

/// The inner `result` of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub user_id: Option<String>,
    pub deal_id: Option<String>,
}

/// GetCourse sends booleans as `true`, `"true"`, `1` or `"1"`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => matches!(s.as_str(), "true" | "1"),
        _ => false,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Both levels must agree: a call can succeed outside while the action failed inside.
pub fn parse_import(answer: &Value) -> Result<Imported, SchoolError> {
    let result = &answer["result"];
    let message = result["error_message"]
        .as_str()
        .or_else(|| answer["error_message"].as_str())
        .unwrap_or("")
        .to_string();
    if !truthy(&answer["success"]) {
        if message.to_lowercase().contains("ключ") || message.to_lowercase().contains("key") {
            return Err(SchoolError::auth(format!(
                "GetCourse refused the key: {message}"
            )));
        }
        return Err(SchoolError::Rejected {
            message: "GetCourse refused the call".into(),
            fields: vec![(String::new(), message)],
        });
    }
    if truthy(&result["error"]) || !truthy(&result["success"]) {
        return Err(SchoolError::Rejected {
            message: "GetCourse refused the import".into(),
            fields: vec![(String::new(), message)],
        });
    }
    Ok(Imported {
        user_id: text_of(&result["user_id"]),
        deal_id: text_of(&result["deal_id"]),
    })
}
