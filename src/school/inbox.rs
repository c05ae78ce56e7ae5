//! GetCourse's "call URL" process step, processed from the inbox. The step is unsigned and
//! puts every value in the URL, so trust comes from the secret path segment; a paid order
//! becomes an access job for GetCourse, a payment job for AlfaCRM and, with 1C over OData, an
//! invoice job for 1C, all queued together.

use async_trait::async_trait;

use super::config::{AccessMode, SchoolConfig};
use super::jobs::{ACCESS_GRANTED, PAYMENT_RECORDED, PaymentNotice};
use super::{ALFACRM, GETCOURSE};
use crate::accounting::jobs::{PaymentInvoice, payment_invoice_job};
use crate::sync::inbox::{InboxHandler, InboxMessage, QUERY_HEADER};
use crate::sync::jobs::{NewJob, enqueue_in};
use crate::sync::{Delivered, DeliveryError, JobContext};

pub struct GetCourseInbox {
    pub school: SchoolConfig,
    /// 1C is reached over OData: each payment also gets its invoice there.
    pub accounting: bool,
}

/// The parameters of a callback: the query string, then a form body when GetCourse posts one.
pub fn parameters(message: &InboxMessage) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = message
        .headers
        .get(QUERY_HEADER)
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let form = message
        .headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        out.extend(url::form_urlencoded::parse(message.body.as_bytes()).into_owned());
    }
    out
}

impl GetCourseInbox {
    /// Which course the order is for: the `course` parameter the school put in the URL
    /// template, else an offer code or title named in the order's offers/positions.
    fn course(&self, get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        if let Some(key) = get("course")
            && self.school.course(&key).is_some()
        {
            return Some(key);
        }
        let haystack = [get("offers"), get("positions")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if haystack.is_empty() {
            return None;
        }
        self.school
            .courses
            .iter()
            .find(|c| {
                c.getcourse_offer_code
                    .as_deref()
                    .is_some_and(|o| haystack.contains(&o.to_lowercase()))
                    || haystack.contains(&c.title.to_lowercase())
            })
            .map(|c| c.key.clone())
    }
}

impl GetCourseInbox {
    /// The 1C invoice for a paid order: the course as the line (its key is what
    /// `[onec.services]` maps), else the order's offers as GetCourse named them.
    pub(crate) fn invoice(&self, notice: &PaymentNotice) -> PaymentInvoice {
        let course = notice.course.as_deref().and_then(|k| self.school.course(k));
        let phone = notice.phone().map(|p| p.as_str().to_string());
        let email = notice.email().map(|e| e.as_str().to_string());
        PaymentInvoice {
            payment: format!("getcourse:{}", notice.deal),
            name: notice
                .name
                .clone()
                .or_else(|| email.clone())
                .or_else(|| phone.clone())
                .unwrap_or_else(|| format!("GetCourse #{}", notice.deal)),
            phone,
            email,
            item: course.map(|c| c.key.clone()).unwrap_or_default(),
            line: course
                .map(|c| c.title.clone())
                .or_else(|| notice.offers.clone())
                .unwrap_or_else(|| format!("GetCourse #{}", notice.deal)),
            amount_minor: notice.amount_minor(),
        }
    }
}

impl GetCourseInbox {
    /// The payment a notice reports; `None` for a notice of another status (not a payment).
    pub fn notice(
        &self,
        params: &[(String, String)],
        inbox: i64,
    ) -> Result<Option<PaymentNotice>, DeliveryError> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, v)| key == k && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_string())
        };
        let status = get("status").unwrap_or_default();
        let paid_statuses = self
            .school
            .getcourse
            .as_ref()
            .map(|g| g.paid_statuses.clone())
            .unwrap_or_default();
        if !paid_statuses
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&status))
        {
            tracing::info!(inbox, %status, "GetCourse notice is not a payment; ignored");
            return Ok(None);
        }
        let Some(deal) = get("id").or_else(|| get("number")) else {
            return Err(DeliveryError::permanent(
                "GetCourse notice without id or number: add id={object.id} to the URL",
            ));
        };
        let notice = PaymentNotice {
            deal: deal.clone(),
            number: get("number"),
            email: get("email"),
            phone: get("phone"),
            name: get("name").or_else(|| get("first_name")),
            paid: get("payed_money")
                .or_else(|| get("cost_money_value"))
                .or_else(|| get("cost_money")),
            course: self.course(&get),
            offers: get("offers").or_else(|| get("positions")),
        };
        if notice.phone().is_none() && notice.email().is_none() {
            return Err(DeliveryError::permanent(format!(
                "GetCourse deal {deal}: neither phone nor e-mail in the notice"
            )));
        }
        Ok(Some(notice))
    }
}

#[async_trait]
impl InboxHandler for GetCourseInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let params = parameters(message);
        let Some(notice) = self.notice(&params, message.id)? else {
            return Ok(Delivered::done());
        };
        let deal = notice.deal.clone();
        let payload = serde_json::to_value(&notice)
            .map_err(|e| DeliveryError::permanent(format!("notice: {e}")))?;
        let mut jobs = Vec::new();
        let grants_access = self
            .school
            .getcourse
            .as_ref()
            .is_some_and(|g| g.access != AccessMode::None);
        if grants_access {
            if notice.course.is_none() {
                return Err(DeliveryError::permanent(format!(
                    "GetCourse deal {deal}: no course in [[school.courses]] matches it; add \
                     course=<key> to the call URL"
                )));
            }
            jobs.push(NewJob {
                business_id: message.business_id.clone(),
                system: GETCOURSE,
                operation: ACCESS_GRANTED.into(),
                payload: payload.clone(),
                idempotency_key: format!("gc-access:{deal}"),
                ordering_key: None,
            });
        }
        if self.school.alfacrm.is_some() {
            jobs.push(NewJob {
                business_id: message.business_id.clone(),
                system: ALFACRM,
                operation: PAYMENT_RECORDED.into(),
                payload,
                idempotency_key: format!("gc-payment:{deal}"),
                ordering_key: notice.phone().map(|p| format!("customer:{}", p.as_str())),
            });
        }
        if self.accounting {
            jobs.push(payment_invoice_job(
                &message.business_id,
                &self.invoice(&notice),
            ));
        }
        let transient =
            |e: crate::store::StoreError| DeliveryError::transient(format!("store: {e}"));
        let mut tx = ctx.store.begin().await.map_err(|e| transient(e.into()))?;
        for job in &jobs {
            enqueue_in(&mut tx, job, ctx.now).await.map_err(transient)?;
        }
        tx.commit().await.map_err(|e| transient(e.into()))?;
        Ok(Delivered::done())
    }
}
