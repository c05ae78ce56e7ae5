//! Setup help (operator): what an integrator otherwise copies out of vendors' screens or asks
//! `zapis check` for — the schedule's services and masters with their ids, the CRM's
//! pipelines, stages and fields with theirs, the time zones side by side, and the webhook URLs
//! to paste into each vendor.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use chrono::Utc;
use maud::html;
use secrecy::ExposeSecret;

use super::auth::Refusal;
use super::layout::{page, tr};
use super::{ConsoleState, Page, visit};
use crate::domain::{Master, Service};

/// Masters are asked per service; past this many services the rest are not asked, so one page
/// view stays within a vendor's rate limit.
const MASTER_LOOKUPS: usize = 20;
/// The schedule is asked with this deadline; the page says so when it is not met.
const SCHEDULE_DEADLINE: Duration = Duration::from_secs(10);

async fn catalogue(
    booking: &dyn crate::booking::BookingSystem,
) -> Result<(Vec<Service>, Vec<Master>), String> {
    let services = booking.services().await.map_err(|e| e.to_string())?;
    let mut masters: Vec<Master> = Vec::new();
    for service in services.iter().take(MASTER_LOOKUPS) {
        for m in booking
            .masters(&service.id)
            .await
            .map_err(|e| e.to_string())?
        {
            if !masters.iter().any(|known| known.id == m.id) {
                masters.push(m);
            }
        }
    }
    Ok((services, masters))
}

pub async fn page_of(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Setup).await?;
    let (lang, b) = (v.lang, &*v.business);
    let now = Utc::now();
    let found = tokio::time::timeout(SCHEDULE_DEADLINE, catalogue(b.booking.as_ref()))
        .await
        .unwrap_or_else(|_| Err(tr(lang, "console-schedule-slow")));
    let crm = match &b.crm_client {
        Some(crm) => Some(
            match tokio::time::timeout(SCHEDULE_DEADLINE, crm.catalog()).await {
                Ok(Ok(catalog)) => Ok(catalog),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(tr(lang, "console-crm-slow")),
            },
        ),
        None => None,
    };
    let base = state
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_string());
    let server_zone = iana_time_zone().unwrap_or_else(|| "UTC".into());
    let body = html! {
        section {
            h2 { (tr(lang, "console-time-zones")) }
            table {
                thead { tr { th { (tr(lang, "console-zone")) } th { (tr(lang, "console-now")) } } }
                tbody {
                    tr { td { (tr(lang, "console-zone-business")) ": " (b.timezone.name()) }
                         td { (now.with_timezone(&b.timezone).format("%Y-%m-%d %H:%M")) } }
                    tr { td { (tr(lang, "console-zone-server")) ": " (server_zone) }
                         td { (now.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")) } }
                    tr { td { "UTC" } td { (now.format("%Y-%m-%d %H:%M")) } }
                }
            }
        }
        section {
            h2 { (tr(lang, "console-webhooks")) }
            @if b.webhook_sources.is_empty() {
                p.empty { (tr(lang, "console-none")) }
            } @else {
                @if base.is_none() { p.note { (tr(lang, "console-public-url-missing")) } }
                table {
                    tbody {
                        @for source in &b.webhook_sources {
                            tr {
                                td { (source) }
                                td { code { (base.as_deref().unwrap_or("https://HOST")) (b.webhook_prefix) (source) "/" (b.webhook_secret.expose_secret()) } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (tr(lang, "console-schedule")) ": " (b.schedule) }
            @match &found {
                Err(e) => p.error { (tr(lang, "console-schedule-unreachable")) ": " (crate::sync::journal::mask_text(e)) },
                Ok((services, masters)) => {
                    h3 { (tr(lang, "console-services")) }
                    table {
                        thead { tr { th { "id" } th { (tr(lang, "console-service")) } th { (tr(lang, "console-category")) } th.num { (tr(lang, "console-minutes")) } th.num { (tr(lang, "console-price")) } } }
                        tbody {
                            @for s in services {
                                tr { td { code { (s.id) } } td { (s.name) } td { (s.category) } td.num { (s.duration_min) }
                                     td.num { (s.price_min.to_string()) @if s.price_max != s.price_min { " – " (s.price_max.to_string()) } } }
                            }
                        }
                    }
                    h3 { (tr(lang, "console-masters")) }
                    table {
                        thead { tr { th { "id" } th { (tr(lang, "console-master")) } th { (tr(lang, "console-specialization")) } } }
                        tbody {
                            @for m in masters {
                                tr { td { code { (m.id) } } td { (m.name) } td { (m.specialization) } }
                            }
                        }
                    }
                }
            }
        }
        @if let (Some(system), Some(found)) = (b.crm, &crm) {
            section #crm {
                h2 { (tr(lang, "console-crm")) ": " (system) }
                @match found {
                    Err(e) => p.error { (tr(lang, "console-crm-unreachable")) ": " (crate::sync::journal::mask_text(e)) },
                    Ok(catalog) => {
                        h3 { (tr(lang, "console-pipelines")) }
                        @for p in &catalog.pipelines {
                            table.pipeline data-pipeline=(p.id) {
                                caption { (p.name) " · id " code { (p.id) } }
                                thead { tr { th { "id" } th { (tr(lang, "console-stage")) } } }
                                tbody {
                                    @for (id, name) in &p.stages {
                                        tr { td { code { (id) } } td { (name) } }
                                    }
                                }
                            }
                        }
                        h3 { (tr(lang, "console-fields")) }
                        table.fields {
                            thead { tr { th { "id" } th { (tr(lang, "console-field")) } th { (tr(lang, "console-field-code")) } th { (tr(lang, "console-field-type")) } } }
                            tbody {
                                @for f in &catalog.fields {
                                    tr { td { code { (f.id) } } td { (f.name) } td { @if let Some(c) = &f.code { code { (c) } } } td { (f.kind) } }
                                }
                            }
                        }
                        @if !catalog.sources.is_empty() {
                            h3 { (tr(lang, "console-crm-sources")) }
                            table.sources {
                                tbody {
                                    @for (id, name) in &catalog.sources {
                                        tr { td { code { (id) } } td { (name) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let path = format!("/console/b/{}/setup", b.id);
    Ok(page(
        &v,
        Page::Setup,
        &tr(lang, "console-nav-setup"),
        &path,
        body,
    ))
}

/// The server's zone as the system names it (`TZ`, else `/etc/timezone`), for reading only.
fn iana_time_zone() -> Option<String> {
    std::env::var("TZ")
        .ok()
        .filter(|z| !z.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .map(|z| z.trim().to_string())
        })
        .filter(|z| !z.is_empty())
}
