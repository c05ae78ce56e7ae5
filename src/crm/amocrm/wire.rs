//! The private JSON shapes sent to and read from amoCRM (unknown fields ignored).

use super::*;

// -------------------------------------------------------------------- wire types (out)

#[derive(Serialize)]
pub(super) struct TokenRequestOut<'a> {
    pub(super) client_id: &'a str,
    pub(super) client_secret: &'a str,
    pub(super) grant_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) refresh_token: Option<&'a str>,
    pub(super) redirect_uri: &'a str,
}

#[derive(Serialize)]
pub(super) struct FieldValueOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) field_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) field_code: Option<&'static str>,
    pub(super) values: Vec<ValueOut>,
}

#[derive(Serialize)]
pub(super) struct ValueOut {
    pub(super) value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) enum_code: Option<&'static str>,
}

impl FieldValueOut {
    pub(super) fn id(field_id: i64, value: String) -> FieldValueOut {
        FieldValueOut {
            field_id: Some(field_id),
            field_code: None,
            values: vec![ValueOut {
                value,
                enum_code: None,
            }],
        }
    }
    pub(super) fn many(code: &'static str, values: Vec<(String, &'static str)>) -> FieldValueOut {
        FieldValueOut {
            field_id: None,
            field_code: Some(code),
            values: values
                .into_iter()
                .map(|(value, enum_code)| ValueOut {
                    value,
                    enum_code: Some(enum_code),
                })
                .collect(),
        }
    }
    pub(super) fn code(
        code: &'static str,
        value: String,
        enum_code: Option<&'static str>,
    ) -> FieldValueOut {
        FieldValueOut {
            field_id: None,
            field_code: Some(code),
            values: vec![ValueOut { value, enum_code }],
        }
    }
}

#[derive(Serialize)]
pub(super) struct ContactOut {
    pub(super) name: String,
    pub(super) custom_fields_values: Vec<FieldValueOut>,
}

/// A contact in a bulk add (with `request_id`) or a bulk update (with `id`).
#[derive(Serialize)]
pub(super) struct BulkContactOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    pub(super) custom_fields_values: Vec<FieldValueOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) request_id: Option<String>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    pub(super) embedded: Option<BulkEmbeddedOut>,
}

#[derive(Serialize)]
pub(super) struct BulkEmbeddedOut {
    pub(super) tags: Vec<TagOut>,
}

#[derive(Serialize)]
pub(super) struct TagOut {
    pub(super) name: String,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum EmbeddedContact {
    Link { id: i64, is_main: bool },
    New(ContactOut),
}

#[derive(Serialize)]
pub(super) struct LeadEmbeddedOut {
    pub(super) tags: Vec<TagOut>,
    pub(super) contacts: Vec<EmbeddedContact>,
}

#[derive(Serialize)]
pub(super) struct LeadOut {
    pub(super) name: String,
    pub(super) price: i64,
    pub(super) pipeline_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) status_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) responsible_user_id: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) custom_fields_values: Vec<FieldValueOut>,
    #[serde(rename = "_embedded")]
    pub(super) embedded: LeadEmbeddedOut,
    /// Echoed back, never stored by amoCRM: only helps reading a batch answer.
    pub(super) request_id: String,
}

#[derive(Serialize)]
pub(super) struct LeadPatchOut {
    pub(super) pipeline_id: i64,
    pub(super) status_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) loss_reason_id: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct NoteOut {
    pub(super) entity_id: i64,
    pub(super) note_type: &'static str,
    pub(super) params: NoteParamsOut,
}

#[derive(Serialize)]
pub(super) struct NoteParamsOut {
    pub(super) text: String,
}

#[derive(Serialize)]
pub(super) struct TaskOut {
    pub(super) text: String,
    pub(super) complete_till: i64,
    pub(super) entity_id: i64,
    pub(super) entity_type: &'static str,
    pub(super) task_type_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) responsible_user_id: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct FieldOut<'a> {
    #[serde(rename = "type")]
    pub(super) field_type: &'static str,
    pub(super) name: &'a str,
    pub(super) request_id: &'static str,
}

#[derive(Serialize)]
pub(super) struct WebhookOut<'a> {
    pub(super) destination: &'a str,
    pub(super) settings: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sort: Option<i64>,
}

// -------------------------------------------------------------------- wire types (in)

#[derive(Deserialize)]
pub(super) struct TokenIn {
    pub(super) access_token: String,
    pub(super) refresh_token: String,
    pub(super) expires_in: i64,
}

#[derive(Deserialize, Default)]
pub(super) struct ProblemIn {
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) detail: Option<String>,
    #[serde(default)]
    pub(super) hint: Option<String>,
    #[serde(default, rename = "validation-errors")]
    pub(super) validation_errors: Vec<ValidationItemIn>,
}

#[derive(Deserialize)]
pub(super) struct ValidationItemIn {
    #[serde(default)]
    pub(super) request_id: Option<String>,
    #[serde(default)]
    pub(super) errors: Vec<ValidationErrorIn>,
}

#[derive(Deserialize)]
pub(super) struct ValidationErrorIn {
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) detail: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CustomFieldIn {
    #[serde(default)]
    pub(super) field_id: Option<i64>,
    #[serde(default)]
    pub(super) field_code: Option<String>,
    #[serde(default)]
    pub(super) values: Vec<ValueIn>,
}

#[derive(Deserialize)]
pub(super) struct ValueIn {
    /// Text for most fields, but numbers and booleans occur.
    pub(super) value: serde_json::Value,
}

#[derive(Deserialize)]
pub(super) struct ContactsPage {
    #[serde(rename = "_embedded")]
    pub(super) embedded: ContactsEmbedded,
    #[serde(rename = "_links", default)]
    pub(super) links: Option<PageLinks>,
}

#[derive(Deserialize)]
pub(super) struct PageLinks {
    #[serde(default)]
    pub(super) next: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct ContactsEmbedded {
    #[serde(default)]
    pub(super) contacts: Vec<ContactIn>,
}

#[derive(Deserialize)]
pub(super) struct ContactIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) custom_fields_values: Option<Vec<CustomFieldIn>>,
    #[serde(rename = "_embedded", default)]
    pub(super) embedded: Option<ContactEmbeddedIn>,
}

#[derive(Deserialize)]
pub(super) struct ContactEmbeddedIn {
    #[serde(default)]
    pub(super) tags: Vec<TagIn>,
}

impl ContactIn {
    pub(super) fn record(&self) -> ContactRecord {
        ContactRecord {
            id: self.id.to_string(),
            name: self.name.clone().unwrap_or_default(),
            phones: self.values_of("PHONE").map(str::to_string).collect(),
            emails: self.values_of("EMAIL").map(str::to_string).collect(),
            tags: self
                .embedded
                .iter()
                .flat_map(|e| e.tags.iter().filter_map(|t| t.name.clone()))
                .collect(),
        }
    }
    pub(super) fn values_of<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.custom_fields_values
            .iter()
            .flatten()
            .filter(move |f| f.field_code.as_deref() == Some(code))
            .flat_map(|f| f.values.iter())
            .filter_map(|v| v.value.as_str())
    }
    pub(super) fn phones(&self) -> impl Iterator<Item = Phone> + '_ {
        self.values_of("PHONE").filter_map(|v| Phone::parse(v).ok())
    }
    pub(super) fn emails(&self) -> impl Iterator<Item = Email> + '_ {
        self.values_of("EMAIL").filter_map(|v| Email::parse(v).ok())
    }
}

#[derive(Deserialize)]
pub(super) struct AddedPage<E> {
    #[serde(rename = "_embedded")]
    pub(super) embedded: E,
}

#[derive(Deserialize)]
pub(super) struct AddedIn {
    pub(super) id: i64,
    /// Echoed back as sent; amoCRM sends it as a string.
    #[serde(default, deserialize_with = "request_id_text")]
    pub(super) request_id: Option<String>,
}

pub(super) fn request_id_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[derive(Deserialize)]
pub(super) struct ContactsAddedEmbedded {
    pub(super) contacts: Vec<AddedIn>,
}

#[derive(Deserialize)]
pub(super) struct LeadsAddedEmbedded {
    pub(super) leads: Vec<AddedIn>,
}

#[derive(Deserialize)]
pub(super) struct NotesEmbedded {
    pub(super) notes: Vec<AddedIn>,
}

#[derive(Deserialize)]
pub(super) struct TasksEmbedded {
    pub(super) tasks: Vec<AddedIn>,
}

#[derive(Deserialize)]
pub(super) struct TasksPage {
    #[serde(rename = "_embedded")]
    pub(super) embedded: TaskListEmbedded,
}

#[derive(Deserialize)]
pub(super) struct TaskListEmbedded {
    #[serde(default)]
    pub(super) tasks: Vec<TaskIn>,
}

#[derive(Deserialize)]
pub(super) struct TaskIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) entity_id: Option<i64>,
    #[serde(default)]
    pub(super) text: String,
}

#[derive(Deserialize)]
pub(super) struct ComplexIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) contact_id: Option<i64>,
    #[serde(default)]
    pub(super) merged: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct LeadsPage {
    #[serde(rename = "_embedded")]
    pub(super) embedded: LeadsEmbedded,
}

#[derive(Deserialize)]
pub(super) struct LeadsEmbedded {
    #[serde(default)]
    pub(super) leads: Vec<LeadIn>,
}

#[derive(Deserialize)]
pub(super) struct LeadIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) price: Option<i64>,
    pub(super) status_id: i64,
    pub(super) pipeline_id: i64,
    #[serde(default)]
    pub(super) custom_fields_values: Option<Vec<CustomFieldIn>>,
}

#[derive(Deserialize)]
pub(super) struct TagIn {
    #[serde(default)]
    pub(super) name: Option<String>,
}

impl LeadIn {
    pub(super) fn to_domain(&self) -> CrmLead {
        CrmLead {
            id: self.id.to_string(),
            status_id: self.status_id,
            pipeline_id: self.pipeline_id,
            price: self.price,
            name: self.name.clone(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct NotesPage {
    #[serde(rename = "_embedded")]
    pub(super) embedded: NotesListEmbedded,
}

#[derive(Deserialize)]
pub(super) struct NotesListEmbedded {
    #[serde(default)]
    pub(super) notes: Vec<NoteIn>,
}

#[derive(Deserialize)]
pub(super) struct NoteIn {
    #[serde(default)]
    pub(super) params: Option<NoteParamsIn>,
}

#[derive(Deserialize)]
pub(super) struct NoteParamsIn {
    #[serde(default)]
    pub(super) text: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct FieldsPage {
    #[serde(rename = "_embedded")]
    pub(super) embedded: FieldsEmbedded,
    #[serde(rename = "_links", default)]
    pub(super) links: Option<PageLinks>,
}

#[derive(Deserialize)]
pub(super) struct FieldsEmbedded {
    #[serde(default)]
    pub(super) custom_fields: Vec<FieldIn>,
}

#[derive(Deserialize)]
pub(super) struct FieldIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default, rename = "type")]
    pub(super) field_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct AccountIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PipelineIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default, rename = "_embedded")]
    pub(super) embedded: Option<PipelineEmbeddedIn>,
}

#[derive(Deserialize, Default)]
pub(super) struct PipelinesIn {
    #[serde(default, rename = "_embedded")]
    pub(super) embedded: Option<PipelinesEmbeddedIn>,
}

#[derive(Deserialize)]
pub(super) struct PipelinesEmbeddedIn {
    #[serde(default)]
    pub(super) pipelines: Vec<PipelineIn>,
}

#[derive(Deserialize)]
pub(super) struct PipelineEmbeddedIn {
    #[serde(default)]
    pub(super) statuses: Vec<StatusIn>,
}

#[derive(Deserialize)]
pub(super) struct StatusIn {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WebhookIn {
    pub(super) id: i64,
    pub(super) destination: String,
    #[serde(default)]
    pub(super) settings: Vec<String>,
    #[serde(default)]
    pub(super) disabled: Option<bool>,
}
