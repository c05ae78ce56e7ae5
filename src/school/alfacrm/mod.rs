//! AlfaCRM v2api client: e-mail + API key login, a token renewed before its 15 minutes run out
//! and once more on 401, every call scoped to the configured branch.
//! Facts relied on: docs/alfacrm.md.
//!
//! The folder: this file holds the type and its [`SchoolCrm`] impl; `config.rs`
//! `[school.alfacrm]`; `client.rs` login, the calls and the sorting of answers; `wire.rs`
//! AlfaCRM's shapes.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Customer, Group, NewCustomer, NewPayment, NewTask, SchoolCrm, SchoolError};
use crate::normalize::Phone;

mod client;
pub(super) mod config;
mod wire;

use config::AlfaCrmConfig;
pub use wire::Page;

/// AlfaCRM's tokens live 15 minutes; renewing a minute early keeps a long call from
/// starting with a token that dies mid-flight.
const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);
/// The index page size asked for; AlfaCRM's own default is not documented.
const PAGE_SIZE: u32 = 50;

pub struct AlfaCrm {
    http: reqwest::Client,
    config: AlfaCrmConfig,
    token: Mutex<Option<(String, Instant)>>,
}

#[async_trait]
impl SchoolCrm for AlfaCrm {
    async fn find_customer(
        &self,
        phone: Option<&Phone>,
        email: Option<&str>,
    ) -> Result<Option<Customer>, SchoolError> {
        if let Some(phone) = phone {
            // AlfaCRM keeps phones as typed; search by the ten national digits (present in
            // every way of typing a Russian number) and compare normalised on our side.
            let digits: String = phone
                .as_str()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let needle = digits[digits.len().saturating_sub(10)..].to_string();
            let found: Vec<Customer> = self
                .index(
                    "customer",
                    &[],
                    json!({"phone": needle, "is_study": 2, "removed": 1}),
                )
                .await?;
            if let Some(c) = found.into_iter().find(|c| c.has_phone(phone)) {
                return Ok(Some(c));
            }
        }
        if let Some(email) = email {
            let found: Vec<Customer> = self
                .index(
                    "customer",
                    &[],
                    json!({"email": email, "is_study": 2, "removed": 1}),
                )
                .await?;
            if let Some(c) = found.into_iter().find(|c| c.has_email(email)) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    async fn create_customer(&self, new: &NewCustomer) -> Result<Customer, SchoolError> {
        let mut body = json!({
            "name": new.name,
            "branch_ids": [self.config.branch_id],
            "phone": new.phone.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "email": new.email.iter().collect::<Vec<_>>(),
            "is_study": if new.is_study { 1 } else { 0 },
            "legal_type": 1,
            "note": new.note,
        });
        let map = body.as_object_mut().expect("a JSON object literal");
        if let Some(id) = new.lead_status_id {
            map.insert("lead_status_id".into(), json!(id));
        }
        if let Some(id) = new.lead_source_id {
            map.insert("lead_source_id".into(), json!(id));
        }
        if let Some(id) = new.assigned_id {
            map.insert("assigned_id".into(), json!(id));
        }
        if let Some(id) = new.study_status_id {
            map.insert("study_status_id".into(), json!(id));
        }
        let model = self.save("customer/create", &[], &body).await?;
        serde_json::from_value(model)
            .map_err(|e| SchoolError::permanent(format!("AlfaCRM customer model: {e}")))
    }

    async fn mark_studying(
        &self,
        customer_id: i64,
        study_status_id: Option<i64>,
    ) -> Result<(), SchoolError> {
        let mut body = json!({"is_study": 1});
        if let Some(id) = study_status_id {
            body["study_status_id"] = json!(id);
        }
        self.save("customer/update", &[("id", customer_id.to_string())], &body)
            .await?;
        Ok(())
    }

    async fn groups(&self) -> Result<Vec<Group>, SchoolError> {
        self.index("group", &[], json!({})).await
    }

    async fn enrol(
        &self,
        customer_id: i64,
        group_id: i64,
        start: chrono::NaiveDate,
    ) -> Result<(), SchoolError> {
        let body = json!({
            "customer_id": customer_id,
            "b_date": start.format("%Y-%m-%d").to_string(),
        });
        match self
            .save("cgi/create", &[("group_id", group_id.to_string())], &body)
            .await
        {
            Ok(_) => Ok(()),
            // "уже состоит в группе": a retry after an unknown outcome, or a returning student.
            Err(SchoolError::Rejected { fields, .. })
                if fields
                    .iter()
                    .any(|(f, m)| f == "group_id" && m.contains("уже состоит")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn create_task(&self, task: &NewTask) -> Result<i64, SchoolError> {
        let body = json!({
            "branch_ids": [self.config.branch_id],
            "assigned_ids": task.assigned_id.into_iter().collect::<Vec<_>>(),
            "customer_ids": [task.customer_id],
            "title": task.title,
            "text": task.text,
            "due_date": task.due.format("%Y-%m-%d").to_string(),
            "is_notify": 1,
            "priority": 2,
        });
        let model = self.save("task/create", &[], &body).await?;
        model["id"]
            .as_i64()
            .ok_or_else(|| SchoolError::permanent("AlfaCRM task without id"))
    }

    async fn create_payment(&self, pay: &NewPayment) -> Result<i64, SchoolError> {
        let mut body = json!({
            "branch_id": self.config.branch_id,
            "customer_id": pay.customer_id,
            "document_date": pay.date.format("%d.%m.%Y").to_string(),
            "income": pay.amount,
            "payer_name": pay.payer_name,
            "note": pay.note,
        });
        for (key, value) in [
            ("pay_account_id", self.config.pay_account_id),
            ("pay_item_id", self.config.pay_item_id),
            ("pay_type_id", self.config.pay_type_id),
        ] {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        let model = self.save("pay/create", &[], &body).await?;
        model["id"]
            .as_i64()
            .ok_or_else(|| SchoolError::permanent("AlfaCRM payment without id"))
    }

    async fn payments_of(&self, customer_id: i64) -> Result<Vec<Value>, SchoolError> {
        self.index("pay", &[], json!({"customer_id": customer_id}))
            .await
    }
}
