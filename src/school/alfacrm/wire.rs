//! AlfaCRM's answers and requests as it sends and reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `index` answers.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default)]
    pub total: i64,
    #[serde(default)]
    pub count: i64,
    #[serde(default)]
    pub page: i64,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// `create` / `update` answers: `errors` is `[]` on success and a field → messages map on a
/// validation failure.
#[derive(Debug, Deserialize)]
pub(super) struct Saved {
    #[serde(default)]
    pub(super) success: bool,
    #[serde(default)]
    pub(super) errors: Value,
    #[serde(default)]
    pub(super) model: Value,
}

#[derive(Serialize)]
pub(super) struct Login<'a> {
    pub(super) email: &'a str,
    pub(super) api_key: &'a str,
}
