//! The school's writes, run by the sync engine. AlfaCRM: an application becomes a customer in
//! the course's group with a start date and a task for the curator; a payment marks the
//! student and books the money. GetCourse: a payment opens the course.
//! Every step looks up what an earlier attempt may have created before creating it.

use crate::domain::BusinessId;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::applications::{APPLICATION_CREATED, Application, application};
use super::config::{AccessMode, AlfaCrmConfig, SchoolConfig};
use super::getcourse::{GcUser, GetCourse};
use super::{Customer, NewCustomer, NewPayment, NewTask, SchoolCrm, SchoolError};
use crate::domain::Source;
use crate::i18n::{FluentValue, Lang, Texts};
use crate::normalize::{Email, Phone};
use crate::sync::{Delivered, DeliveryError, Job, JobContext, JobHandler};

/// AlfaCRM: record a payment that arrived elsewhere (GetCourse) and mark the student.
pub const PAYMENT_RECORDED: &str = "payment.recorded";
/// GetCourse: open the course to the payer.
pub const ACCESS_GRANTED: &str = "access.grant";

/// A paid order as GetCourse's "call URL" step reported it, with the course resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PaymentNotice {
    /// GetCourse's deal id, or its number when the id is not in the URL template.
    pub deal: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// What was paid, as GetCourse printed it ("9 900 руб.").
    #[serde(default)]
    pub paid: Option<String>,
    #[serde(default)]
    pub course: Option<String>,
    #[serde(default)]
    pub offers: Option<String>,
}

impl PaymentNotice {
    pub fn phone(&self) -> Option<Phone> {
        self.phone.as_deref().and_then(|p| Phone::parse(p).ok())
    }

    pub fn email(&self) -> Option<Email> {
        self.email.as_deref().and_then(|e| Email::parse(e).ok())
    }

    /// Kopecks from the same texts as [`Self::amount`], without floating point: an invoice's
    /// sum must be exact.
    pub fn amount_minor(&self) -> Option<i64> {
        let text = self.paid.as_deref()?;
        let kept: String = text
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect();
        let kept = kept.trim_end_matches(['.', ',']).replace(',', ".");
        let (rubles, kopecks) = kept.split_once('.').unwrap_or((&kept, ""));
        if rubles.is_empty() || kopecks.len() > 2 || kopecks.contains('.') {
            return None;
        }
        let rubles: i64 = rubles.parse().ok()?;
        let kopecks: i64 = if kopecks.is_empty() {
            0
        } else {
            format!("{kopecks:0<2}").parse().ok()?
        };
        rubles
            .checked_mul(100)?
            .checked_add(kopecks)
            .filter(|v| *v > 0)
    }

    /// Roubles from "9 900 руб.", "9900.50" or "9 900,50 RUB".
    pub fn amount(&self) -> Option<f64> {
        let text = self.paid.as_deref()?;
        let kept: String = text
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect();
        let kept = kept.trim_end_matches(['.', ',']).replace(',', ".");
        kept.parse::<f64>().ok().filter(|v| *v > 0.0)
    }
}

pub struct AlfaCrmJobs {
    crm: Arc<dyn SchoolCrm>,
    alfa: AlfaCrmConfig,
    school: SchoolConfig,
    lang: Lang,
    texts: Texts,
    timezone: chrono_tz::Tz,
}

impl AlfaCrmJobs {
    pub fn new(
        crm: Arc<dyn SchoolCrm>,
        alfa: AlfaCrmConfig,
        school: SchoolConfig,
        lang: Lang,
        timezone: chrono_tz::Tz,
    ) -> AlfaCrmJobs {
        AlfaCrmJobs {
            crm,
            alfa,
            school,
            lang,
            texts: Texts::default(),
            timezone,
        }
    }

    /// The business's words for notes and tasks (built-in words otherwise).
    pub fn with_texts(mut self, texts: Texts) -> AlfaCrmJobs {
        self.texts = texts;
        self
    }

    fn today(&self, ctx: &JobContext<'_>) -> NaiveDate {
        ctx.now.with_timezone(&self.timezone).date_naive()
    }

    fn lead_source(&self, source: &Source) -> Option<i64> {
        source
            .utm
            .source
            .as_deref()
            .and_then(|s| self.alfa.lead_sources.get(s))
            .or_else(|| self.alfa.lead_sources.get(source.channel.as_str()))
            .copied()
            .or(self.alfa.default_lead_source_id)
    }

    /// The customer this phone (or e-mail) belongs to: our own link first, then a search in
    /// AlfaCRM, then a new one. Applications search by phone only: a parent may apply for
    /// two children from one mailbox.
    async fn customer(
        &self,
        business_id: &BusinessId,
        phone: Option<&Phone>,
        email: Option<&Email>,
        search_email: bool,
        create: impl FnOnce() -> NewCustomer,
        ctx: &JobContext<'_>,
    ) -> Result<(i64, bool), DeliveryError> {
        // Links are a cache in front of AlfaCRM's search; phone and e-mail are kept apart
        // because a link names one customer per key.
        let key = phone
            .map(|p| ("school_customer", p.as_str().to_string()))
            .or_else(|| email.map(|e| ("school_customer_email", e.as_str().to_string())));
        if let Some((entity, key)) = &key
            && let Some(id) = ctx
                .store
                .external_id(business_id, entity, key, super::ALFACRM)
                .await
                .map_err(store_error)?
            && let Ok(id) = id.parse::<i64>()
        {
            return Ok((id, false));
        }
        let found: Option<Customer> = self
            .crm
            .find_customer(phone, email.filter(|_| search_email).map(|e| e.as_str()))
            .await
            .map_err(delivery_error)?;
        let (id, created) = match found {
            Some(c) => (c.id, false),
            None => (
                self.crm
                    .create_customer(&create())
                    .await
                    .map_err(delivery_error)?
                    .id,
                true,
            ),
        };
        if let Some((entity, key)) = &key
            && let Err(e) = ctx
                .store
                .put_link(
                    business_id,
                    entity,
                    key,
                    super::ALFACRM,
                    &id.to_string(),
                    ctx.now,
                )
                .await
        {
            // Another key of the same person already names this customer; search finds it.
            tracing::debug!(error = %e, customer = id, "customer link not recorded");
        }
        Ok((id, created))
    }

    /// The start date in the group: the group's own start, or today when it has begun.
    async fn start_date(
        &self,
        group_id: i64,
        today: NaiveDate,
    ) -> Result<NaiveDate, DeliveryError> {
        let groups = self.crm.groups().await.map_err(delivery_error)?;
        let group = groups.iter().find(|g| g.id == group_id).ok_or_else(|| {
            DeliveryError::permanent(format!(
                "AlfaCRM has no group {group_id} in branch {}: fix [[school.courses]]",
                self.alfa.branch_id
            ))
        })?;
        Ok(group.b_date.filter(|d| *d > today).unwrap_or(today))
    }

    fn note(&self, app: &Application, course_title: &str) -> String {
        let utm = &app.details.source.utm;
        let utm_line: Vec<String> = [
            ("utm_source", &utm.source),
            ("utm_medium", &utm.medium),
            ("utm_campaign", &utm.campaign),
            ("utm_content", &utm.content),
            ("utm_term", &utm.term),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        self.texts.t_args(
            self.lang,
            "school-note-application",
            &[
                ("form", FluentValue::from(app.details.form.clone())),
                (
                    "channel",
                    FluentValue::from(app.details.source.channel.as_str()),
                ),
                ("course", FluentValue::from(course_title.to_string())),
                (
                    "comment",
                    FluentValue::from(app.details.comment.clone().unwrap_or_else(|| "—".into())),
                ),
                (
                    "utm",
                    FluentValue::from(if utm_line.is_empty() {
                        "—".to_string()
                    } else {
                        utm_line.join(", ")
                    }),
                ),
                (
                    "referrer",
                    FluentValue::from(app.details.referrer.clone().unwrap_or_else(|| "—".into())),
                ),
                (
                    "link",
                    FluentValue::from(
                        app.details
                            .source
                            .payload
                            .clone()
                            .unwrap_or_else(|| "—".into()),
                    ),
                ),
            ],
        )
    }

    async fn application(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        let id = job.payload["application_id"]
            .as_str()
            .ok_or_else(|| DeliveryError::permanent("job without application_id"))?;
        let app = application(ctx.store, &job.business_id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| DeliveryError::permanent(format!("application {id} is missing")))?;
        let course = app
            .details
            .course
            .as_deref()
            .and_then(|k| self.school.course(k));
        let course_title = course
            .map(|c| c.title.clone())
            .or_else(|| app.details.course.clone())
            .unwrap_or_else(|| "—".into());
        let new = || NewCustomer {
            name: app.details.name.clone(),
            phone: Some(app.details.phone.clone()),
            email: app.details.email.clone(),
            is_study: false,
            lead_status_id: self.alfa.lead_status_id,
            lead_source_id: self.lead_source(&app.details.source),
            assigned_id: self.alfa.curator_id,
            study_status_id: None,
            note: self.note(&app, &course_title),
        };
        let (customer_id, _) = self
            .customer(
                &app.business_id,
                Some(&app.details.phone),
                app.details.email.as_ref(),
                false,
                new,
                ctx,
            )
            .await?;
        let group_id = app
            .details
            .group_id
            .or_else(|| course.and_then(|c| c.alfacrm_group_ids.first().copied()));
        let mut start = None;
        if let Some(group_id) = group_id
            && !app.details.trial
        {
            let date = self.start_date(group_id, self.today(ctx)).await?;
            self.crm
                .enrol(customer_id, group_id, date)
                .await
                .map_err(delivery_error)?;
            start = Some(date);
        }
        if self.alfa.curator_task {
            let done = ctx
                .store
                .external_id(&app.business_id, "school_task", &app.id, super::ALFACRM)
                .await
                .map_err(store_error)?;
            if done.is_none() {
                let start_text = start
                    .map(|d| d.format("%d.%m.%Y").to_string())
                    .unwrap_or_else(|| "—".into());
                let task = NewTask {
                    customer_id,
                    assigned_id: self.alfa.curator_id,
                    title: self.texts.t_args(
                        self.lang,
                        if app.details.trial {
                            "school-task-title-trial"
                        } else {
                            "school-task-title"
                        },
                        &[("course", FluentValue::from(course_title.clone()))],
                    ),
                    text: self.texts.t_args(
                        self.lang,
                        "school-task-text",
                        &[
                            ("name", FluentValue::from(app.details.name.clone())),
                            (
                                "phone",
                                FluentValue::from(app.details.phone.as_str().to_string()),
                            ),
                            ("course", FluentValue::from(course_title.clone())),
                            ("start", FluentValue::from(start_text)),
                        ],
                    ),
                    due: self.today(ctx),
                };
                let task_id = self.crm.create_task(&task).await.map_err(delivery_error)?;
                ctx.store
                    .put_link(
                        &app.business_id,
                        "school_task",
                        &app.id,
                        super::ALFACRM,
                        &task_id.to_string(),
                        ctx.now,
                    )
                    .await
                    .map_err(store_error)?;
            }
        }
        tracing::info!(
            application = %app.id,
            phone = %app.details.phone.masked(),
            customer = customer_id,
            "application delivered to AlfaCRM"
        );
        Ok(Delivered::done())
    }

    async fn payment(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let notice: PaymentNotice = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("unreadable payment notice: {e}")))?;
        let phone = notice.phone();
        let email = notice.email();
        if phone.is_none() && email.is_none() {
            return Err(DeliveryError::permanent(format!(
                "GetCourse deal {} carries neither a valid phone nor an e-mail",
                notice.deal
            )));
        }
        let course = notice.course.as_deref().and_then(|k| self.school.course(k));
        let course_title = course
            .map(|c| c.title.clone())
            .unwrap_or_else(|| notice.offers.clone().unwrap_or_else(|| "—".into()));
        let name = notice
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| notice.email.clone())
            .unwrap_or_else(|| self.texts.t(self.lang, "school-unnamed"));
        let new = || NewCustomer {
            name: name.clone(),
            phone: phone.clone(),
            email: email.clone(),
            is_study: true,
            lead_status_id: None,
            lead_source_id: self
                .alfa
                .lead_sources
                .get("getcourse")
                .copied()
                .or(self.alfa.default_lead_source_id),
            assigned_id: self.alfa.curator_id,
            study_status_id: self.alfa.study_status_id,
            note: self.texts.t_args(
                self.lang,
                "school-note-payment",
                &[
                    ("deal", FluentValue::from(notice.deal.clone())),
                    ("course", FluentValue::from(course_title.clone())),
                ],
            ),
        };
        let (customer_id, created) = self
            .customer(
                &job.business_id,
                phone.as_ref(),
                email.as_ref(),
                true,
                new,
                ctx,
            )
            .await?;
        if !created {
            self.crm
                .mark_studying(customer_id, self.alfa.study_status_id)
                .await
                .map_err(delivery_error)?;
        }
        if let Some(group_id) = course.and_then(|c| c.alfacrm_group_ids.first().copied()) {
            let date = self.start_date(group_id, self.today(ctx)).await?;
            self.crm
                .enrol(customer_id, group_id, date)
                .await
                .map_err(delivery_error)?;
        }
        let linked = ctx
            .store
            .external_id(
                &job.business_id,
                "school_payment",
                &notice.deal,
                super::ALFACRM,
            )
            .await
            .map_err(store_error)?;
        if linked.is_none()
            && let Some(amount) = notice.amount()
        {
            let marker = format!("GetCourse #{}", notice.deal);
            let mut pay_id = None;
            if job.maybe_delivered_before() {
                let earlier = self
                    .crm
                    .payments_of(customer_id)
                    .await
                    .map_err(delivery_error)?;
                pay_id = earlier.iter().find_map(|p| {
                    p["note"]
                        .as_str()
                        .is_some_and(|n| n.contains(&marker))
                        .then(|| p["id"].as_i64())
                        .flatten()
                });
            }
            let pay_id = match pay_id {
                Some(id) => id,
                None => self
                    .crm
                    .create_payment(&NewPayment {
                        customer_id,
                        date: self.today(ctx),
                        amount,
                        payer_name: name.clone(),
                        note: format!("{marker}: {course_title}"),
                    })
                    .await
                    .map_err(delivery_error)?,
            };
            ctx.store
                .put_link(
                    &job.business_id,
                    "school_payment",
                    &notice.deal,
                    super::ALFACRM,
                    &pay_id.to_string(),
                    ctx.now,
                )
                .await
                .map_err(store_error)?;
        }
        Ok(Delivered::done())
    }
}

#[async_trait]
impl JobHandler for AlfaCrmJobs {
    async fn handle(&self, job: &Job, ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        match job.operation.as_str() {
            APPLICATION_CREATED => self.application(job, ctx).await,
            PAYMENT_RECORDED => self.payment(job, ctx).await,
            other => Err(DeliveryError::permanent(format!(
                "alfacrm has no operation {other:?}"
            ))),
        }
    }

    async fn refresh_auth(&self, _business_id: &BusinessId) -> Result<(), DeliveryError> {
        // The client already logged in afresh once before reporting Auth: the credentials
        // themselves are wrong.
        Err(DeliveryError::Auth {
            message: "AlfaCRM refuses the configured e-mail and API key".into(),
            http_status: Some(401),
        })
    }
}

pub struct GetCourseJobs {
    gc: Arc<GetCourse>,
    school: SchoolConfig,
}

impl GetCourseJobs {
    pub fn new(gc: Arc<GetCourse>, school: SchoolConfig) -> GetCourseJobs {
        GetCourseJobs { gc, school }
    }
}

#[async_trait]
impl JobHandler for GetCourseJobs {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        if job.operation != ACCESS_GRANTED {
            return Err(DeliveryError::permanent(format!(
                "getcourse has no operation {:?}",
                job.operation
            )));
        }
        let notice: PaymentNotice = serde_json::from_value(job.payload.clone())
            .map_err(|e| DeliveryError::permanent(format!("unreadable payment notice: {e}")))?;
        let course = notice
            .course
            .as_deref()
            .and_then(|k| self.school.course(k))
            .ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "deal {}: no course in [[school.courses]] matches it",
                    notice.deal
                ))
            })?;
        let user = GcUser {
            email: notice.email().map(|e| e.as_str().to_string()),
            phone: notice.phone().map(|p| p.as_str().to_string()),
            first_name: notice.name.clone(),
        };
        let imported = match self.gc.config().access {
            AccessMode::None => return Ok(Delivered::done()),
            AccessMode::Group => {
                let group = course.getcourse_group.as_deref().ok_or_else(|| {
                    DeliveryError::permanent(format!(
                        "course {} has no getcourse_group",
                        course.key
                    ))
                })?;
                self.gc.add_to_group(&user, group).await
            }
            AccessMode::Deal => {
                let offer = course.getcourse_offer_code.as_deref().ok_or_else(|| {
                    DeliveryError::permanent(format!(
                        "course {} has no getcourse_offer_code",
                        course.key
                    ))
                })?;
                let number = notice.number.clone().unwrap_or_else(|| notice.deal.clone());
                let cost = notice
                    .amount()
                    .map(|a| format!("{a:.2}"))
                    .unwrap_or_else(|| "0".into());
                self.gc.add_paid_deal(&user, offer, &number, &cost).await
            }
        }
        .map_err(delivery_error)?;
        Ok(match imported.deal_id {
            Some(deal_id) => Delivered::linked("gc_deal", &notice.deal, &deal_id),
            None => Delivered::done(),
        })
    }
}

/// For `map_err`: the vendor error's own retry decision, as the queue takes it.
pub fn delivery_error(e: SchoolError) -> DeliveryError {
    e.into()
}

fn store_error(e: crate::store::StoreError) -> DeliveryError {
    DeliveryError::transient(format!("store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_the_way_getcourse_prints_them() {
        let n = |s: &str| PaymentNotice {
            paid: Some(s.into()),
            ..PaymentNotice::default()
        };
        assert_eq!(n("9 900 руб.").amount(), Some(9900.0));
        assert_eq!(n("9900.50").amount(), Some(9900.5));
        assert_eq!(n("9 900,50 RUB").amount(), Some(9900.5));
        assert_eq!(n("0 руб.").amount(), None);
        assert_eq!(n("9 900 руб.").amount_minor(), Some(990_000));
        assert_eq!(n("9900.5").amount_minor(), Some(990_050));
        assert_eq!(n("9 900,05 RUB").amount_minor(), Some(990_005));
        assert_eq!(n("0 руб.").amount_minor(), None);
        assert_eq!(n("1.2.3").amount_minor(), None);
        assert_eq!(n("руб.").amount_minor(), None);
    }
}
