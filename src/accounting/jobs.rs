//! The accounting side of a booking or a payment, run by the sync engine: when a booking is
//! confirmed, the client as a counterparty (found by phone or ИНН, created when missing) and an
//! invoice; when the visit is done, the sales document with the services rendered, posted if
//! configured; when a school's payment arrives (GetCourse), an invoice for the course paid.
//! Every step looks for what an earlier attempt may have created before it creates.

use crate::domain::BusinessId;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Accounting, CounterpartyRequest, DocKind, DocumentLine, DocumentRequest};
use crate::domain::Booking;
use crate::lifecycle::effects::{BookingJob, ONEC_SYSTEM, Operation};
use crate::normalize::Phone;
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler, NewJob};

/// Counterparty and invoice for a payment received elsewhere (a school's GetCourse order).
pub const ONEC_PAYMENT_INVOICE: &str = "onec_payment_invoice";

/// Links of a payment's invoice: entity id = [`PaymentInvoice::payment`].
pub const PAYMENT_INVOICE_ENTITY: &str = "payment_invoice";
/// Links of counterparties found or created by e-mail (by phone they are `client`).
const CLIENT_EMAIL_ENTITY: &str = "client_email";

/// What the invoice for a payment says: who paid, for what and how much. Written when the
/// payment is received, so the job needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInvoice {
    /// The payment's id at its source (`getcourse:<deal>`): the invoice's natural key.
    pub payment: String,
    pub name: String,
    /// E.164.
    #[serde(default)]
    pub phone: Option<String>,
    /// Normalised (its domain lower-cased).
    #[serde(default)]
    pub email: Option<String>,
    /// The key `[onec.services]` maps to a Номенклатура (a course key); unmapped ones take
    /// `onec.nomenclature_key`.
    pub item: String,
    /// The line's text (the course title).
    pub line: String,
    /// `None` when the source did not say: the job then fails naming what to add.
    #[serde(default)]
    pub amount_minor: Option<i64>,
}

pub fn payment_invoice_job(business_id: &BusinessId, invoice: &PaymentInvoice) -> NewJob {
    NewJob {
        business_id: business_id.clone(),
        system: ONEC_SYSTEM,
        operation: ONEC_PAYMENT_INVOICE.into(),
        payload: serde_json::to_value(invoice).unwrap_or_default(),
        idempotency_key: format!("{ONEC_PAYMENT_INVOICE}:{}", invoice.payment),
        // Two payments of one person must not both miss the counterparty and create it twice.
        ordering_key: invoice
            .phone
            .as_ref()
            .or(invoice.email.as_ref())
            .map(|k| format!("client:{k}")),
    }
}

/// Who a document is for.
struct Client<'a> {
    business_id: &'a BusinessId,
    name: &'a str,
    phone: Option<&'a Phone>,
    /// Normalised; searched in 1C only when there is no phone match.
    email: Option<&'a str>,
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
        client: &Client<'_>,
        ctx: &JobContext<'_>,
    ) -> Result<String, DeliveryError> {
        let system = self.accounting.system();
        // Phones are stored normalised, so "8 916…" and "+7 (916)…" are one client here.
        let keys = [
            client.phone.map(|p| ("client", p.as_str())),
            client.email.map(|e| (CLIENT_EMAIL_ENTITY, e)),
        ];
        for (entity, id) in keys.iter().flatten() {
            if let Some(key) = ctx
                .store
                .external_id(client.business_id, entity, id, system)
                .await
                .map_err(store_error)?
            {
                return Ok(key);
            }
        }
        let mut found = None;
        if let Some(phone) = client.phone {
            found = self
                .accounting
                .find_counterparty(Some(phone.as_str()), None)
                .await?;
        }
        if found.is_none()
            && let Some(email) = client.email
        {
            found = self.accounting.find_counterparty_by_email(email).await?;
        }
        let key = match found {
            Some(key) => key,
            None => {
                let key = self
                    .accounting
                    .create_counterparty(&CounterpartyRequest {
                        name: client.name.to_string(),
                        phone: client.phone.map(|p| p.as_str().to_string()),
                        email: client.email.map(str::to_string),
                        inn: None,
                        comment: Some("zapis".into()),
                    })
                    .await?;
                tracing::info!(
                    phone = %client.phone.map(Phone::masked).unwrap_or_default(),
                    "counterparty created in 1C"
                );
                key
            }
        };
        for (entity, id) in keys.iter().flatten() {
            // The links are a cache in front of 1C's search; one that cannot be recorded
            // (another phone already names this counterparty) only costs a search next time.
            if let Err(e) = ctx
                .store
                .put_link(client.business_id, entity, id, system, &key, ctx.now)
                .await
            {
                tracing::debug!(error = %e, entity, "counterparty link not recorded");
            }
        }
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
        let client = Client {
            business_id: &b.business_id,
            name: &b.client_name,
            phone: Some(&b.client_phone),
            email: None,
        };
        let counterparty = self.counterparty(&client, ctx).await?;
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

    async fn booking_document(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let payload: BookingJob =
            serde_json::from_value(job.payload.clone()).map_err(|e| DeliveryError::Permanent {
                message: format!("unreadable job payload: {e}"),
                http_status: None,
            })?;
        let booking = ctx
            .store
            .booking(&job.business_id, &payload.booking_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| DeliveryError::Permanent {
                message: format!("booking {} is not in the store", payload.booking_id),
                http_status: None,
            })?;
        if Operation::of(job) == Some(Operation::OnecInvoice) {
            let (key, entity) = self.document(DocKind::Invoice, &booking, ctx).await?;
            return Ok(Delivered::linked(entity, &booking.id, &key));
        }
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

    /// The invoice for a payment: our link, else the document an earlier attempt left in 1C
    /// (found by its comment), else a new one for the payer's counterparty.
    async fn payment_invoice(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let p: PaymentInvoice = serde_json::from_value(job.payload.clone()).map_err(|e| {
            DeliveryError::permanent(format!("unreadable payment invoice payload: {e}"))
        })?;
        let system = self.accounting.system();
        if let Some(key) = ctx
            .store
            .external_id(&job.business_id, PAYMENT_INVOICE_ENTITY, &p.payment, system)
            .await
            .map_err(store_error)?
        {
            return Ok(Delivered::linked(PAYMENT_INVOICE_ENTITY, &p.payment, &key));
        }
        let marker = format!("zapis:payment:{}", p.payment);
        let key = match self
            .accounting
            .find_document(DocKind::Invoice, &marker)
            .await?
        {
            Some(key) => key,
            None => {
                let amount = p.amount_minor.ok_or_else(|| {
                    DeliveryError::permanent(format!(
                        "payment {}: the notice carries no sum, so there is nothing to invoice; \
                         add payed_money={{object.payed_money}} to GetCourse's call URL",
                        p.payment
                    ))
                })?;
                if p.phone.is_none() && p.email.is_none() {
                    return Err(DeliveryError::permanent(format!(
                        "payment {}: neither phone nor e-mail to find the payer by",
                        p.payment
                    )));
                }
                let phone = p.phone.as_deref().and_then(|s| Phone::parse(s).ok());
                let client = Client {
                    business_id: &job.business_id,
                    name: &p.name,
                    phone: phone.as_ref(),
                    email: p.email.as_deref(),
                };
                let counterparty = self.counterparty(&client, ctx).await?;
                let key = self
                    .accounting
                    .create_document(
                        DocKind::Invoice,
                        &DocumentRequest {
                            counterparty_key: counterparty,
                            date: ctx.now.with_timezone(&self.timezone).naive_local(),
                            marker,
                            lines: vec![DocumentLine {
                                service_id: p.item.clone(),
                                name: p.line.clone(),
                                quantity: 1,
                                price_minor: amount,
                            }],
                        },
                    )
                    .await?;
                tracing::info!(payment = %p.payment, "invoice for the payment created in 1C");
                key
            }
        };
        ctx.store
            .put_link(
                &job.business_id,
                PAYMENT_INVOICE_ENTITY,
                &p.payment,
                system,
                &key,
                ctx.now,
            )
            .await
            .map_err(store_error)?;
        Ok(Delivered::linked(PAYMENT_INVOICE_ENTITY, &p.payment, &key))
    }
}

#[async_trait]
impl JobHandler for OnecJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        match Operation::of(job) {
            Some(Operation::OnecInvoice | Operation::OnecSales) => {
                self.booking_document(job, ctx).await
            }
            // A school's payment is no booking's: its operation is this module's own.
            _ if job.operation == ONEC_PAYMENT_INVOICE => self.payment_invoice(job, ctx).await,
            _ => Err(DeliveryError::Permanent {
                message: format!("onec has no operation {:?}", job.operation),
                http_status: None,
            }),
        }
    }
}
