//! The accounting side of a booking, run by the sync engine: when a booking is confirmed, the
//! client as a counterparty (found by phone or ИНН, created when missing) and an invoice; when
//! the visit is done, the sales document with the services rendered, posted if configured.
//! Every step looks for what an earlier attempt may have created before it creates.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Accounting, CounterpartyRequest, DocKind, DocumentLine, DocumentRequest};
use crate::domain::Booking;
use crate::effects::{BookingJob, booking_job};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler, NewJob};

pub const ONEC_SYSTEM: &str = "onec";
/// Counterparty and invoice for a confirmed booking.
pub const ONEC_INVOICE: &str = "onec_invoice";
/// Sales document for a visit that took place.
pub const ONEC_SALES: &str = "onec_sales";

pub fn invoice_job(business_id: &str, booking_id: &str, at: DateTime<Utc>) -> NewJob {
    booking_job(business_id, ONEC_SYSTEM, ONEC_INVOICE, booking_id, None, at)
}

pub fn sales_job(business_id: &str, booking_id: &str, at: DateTime<Utc>) -> NewJob {
    booking_job(business_id, ONEC_SYSTEM, ONEC_SALES, booking_id, None, at)
}

pub struct OnecJobs {
    accounting: Arc<dyn Accounting>,
    timezone: chrono_tz::Tz,
    post_sales: bool,
}

fn store_error(e: crate::store::StoreError) -> DeliveryError {
    DeliveryError::Transient {
        message: format!("store: {e}"),
        retry_after: None,
        http_status: None,
    }
}

impl OnecJobs {
    pub fn new(accounting: Arc<dyn Accounting>, timezone: chrono_tz::Tz, post_sales: bool) -> Self {
        OnecJobs {
            accounting,
            timezone,
            post_sales,
        }
    }

    async fn counterparty(
        &self,
        b: &Booking,
        ctx: &JobContext<'_>,
    ) -> Result<String, DeliveryError> {
        let system = self.accounting.system();
        // Phones are stored normalised, so "8 916…" and "+7 (916)…" are one client here.
        let phone = b.client_phone.as_str();
        if let Some(key) = ctx
            .store
            .external_id(&b.business_id, "client", phone, system)
            .await
            .map_err(store_error)?
        {
            return Ok(key);
        }
        let key = match self.accounting.find_counterparty(Some(phone), None).await? {
            Some(key) => key,
            None => {
                let key = self
                    .accounting
                    .create_counterparty(&CounterpartyRequest {
                        name: b.client_name.clone(),
                        phone: phone.to_string(),
                        inn: None,
                        comment: Some("zapis".into()),
                    })
                    .await?;
                tracing::info!(phone = %b.client_phone.masked(), "counterparty created in 1C");
                key
            }
        };
        ctx.store
            .put_link(&b.business_id, "client", phone, system, &key, ctx.now)
            .await
            .map_err(store_error)?;
        Ok(key)
    }

    async fn document(
        &self,
        kind: DocKind,
        b: &Booking,
        ctx: &JobContext<'_>,
    ) -> Result<(String, &'static str), DeliveryError> {
        let system = self.accounting.system();
        let (entity, tag) = match kind {
            DocKind::Invoice => ("booking_invoice", "invoice"),
            DocKind::Sales => ("booking_sales", "sales"),
        };
        if let Some(key) = ctx
            .store
            .external_id(&b.business_id, entity, &b.id, system)
            .await
            .map_err(store_error)?
        {
            return Ok((key, entity));
        }
        let marker = format!("zapis:{tag}:{}", b.id);
        if let Some(key) = self.accounting.find_document(kind, &marker).await? {
            return Ok((key, entity));
        }
        let counterparty = self.counterparty(b, ctx).await?;
        let date = match kind {
            DocKind::Invoice => ctx.now,
            DocKind::Sales => b.end(),
        }
        .with_timezone(&self.timezone)
        .naive_local();
        let key = self
            .accounting
            .create_document(
                kind,
                &DocumentRequest {
                    counterparty_key: counterparty,
                    date,
                    marker,
                    lines: vec![DocumentLine {
                        service_id: b.service_id.clone(),
                        name: b.service_name.clone(),
                        quantity: 1,
                        price_minor: b.price.kopecks(),
                    }],
                },
            )
            .await?;
        ctx.store
            .put_link(&b.business_id, entity, &b.id, system, &key, ctx.now)
            .await
            .map_err(store_error)?;
        Ok((key, entity))
    }
}

#[async_trait]
impl JobHandler for OnecJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let payload: BookingJob =
            serde_json::from_value(job.payload.clone()).map_err(|e| DeliveryError::Permanent {
                message: format!("unreadable job payload: {e}"),
                http_status: None,
            })?;
        let booking = ctx
            .store
            .booking(&payload.booking_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| DeliveryError::Permanent {
                message: format!("booking {} is not in the store", payload.booking_id),
                http_status: None,
            })?;
        match job.operation.as_str() {
            ONEC_INVOICE => {
                let (key, entity) = self.document(DocKind::Invoice, &booking, ctx).await?;
                Ok(Delivered::linked(entity, &booking.id, &key))
            }
            ONEC_SALES => {
                let (key, entity) = self.document(DocKind::Sales, &booking, ctx).await?;
                if self.post_sales {
                    let posted = ctx
                        .store
                        .external_id(
                            &booking.business_id,
                            "booking_sales_posted",
                            &booking.id,
                            self.accounting.system(),
                        )
                        .await
                        .map_err(store_error)?;
                    if posted.is_none() {
                        // Posting twice is harmless in 1C (it re-posts), so no search first.
                        self.accounting.post_document(DocKind::Sales, &key).await?;
                        ctx.store
                            .put_link(
                                &booking.business_id,
                                "booking_sales_posted",
                                &booking.id,
                                self.accounting.system(),
                                &key,
                                ctx.now,
                            )
                            .await
                            .map_err(store_error)?;
                    }
                }
                Ok(Delivered::linked(entity, &booking.id, &key))
            }
            other => Err(DeliveryError::Permanent {
                message: format!("onec has no operation {other:?}"),
                http_status: None,
            }),
        }
    }
}
