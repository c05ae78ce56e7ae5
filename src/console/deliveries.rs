//! Deliveries (operator): each integration's health in words, the queue per system and state,
//! the jobs that wait or gave up with a "retry now" button, and the journal with filters.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::{Markup, html};

use super::auth::{CsrfForm, Refusal, check_csrf};
use super::layout::{local_time, page, tr, tr_args};
use super::{ConsoleState, Page, visit};
use crate::domain::System;
use crate::sync::health::{Health, READY_WINDOW, integration_health, last_delivered};
use crate::sync::jobs::{JobState, Queue};
use crate::sync::journal::{JournalFilter, mask_text, read_journal};

/// Rows of each list shown; the CLI has the rest.
const SHOWN: i64 = 50;

#[derive(serde::Deserialize, Default)]
pub struct Filters {
    /// A system to narrow the journal to.
    #[serde(default)]
    system: String,
    /// `1`: failed attempts only.
    #[serde(default)]
    failed: String,
    /// The job a retry was just asked for, to show how it stands now.
    #[serde(default)]
    retried: Option<i64>,
}

fn health_words(h: Health) -> &'static str {
    match h {
        Health::Up => "console-health-up",
        Health::Degraded => "console-health-degraded",
        Health::Down => "console-health-down",
    }
}

fn state_words(s: JobState) -> &'static str {
    match s {
        JobState::Pending => "console-job-pending",
        JobState::Running => "console-job-running",
        JobState::Done => "console-job-done",
        JobState::Dead => "console-job-dead",
    }
}

pub async fn page_of(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    Query(filters): Query<Filters>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Deliveries).await?;
    let (lang, b) = (v.lang, &*v.business);
    let now = state.clock.now();
    let health = integration_health(&state.store, &b.id, &b.systems, READY_WINDOW, now).await?;
    let last_ok = last_delivered(&state.store, &b.id).await?;
    let queue = Queue::new(state.store.clone());
    let counts = queue.stats_of(Some(&b.id)).await?;
    let dead = queue.latest_of(&b.id, JobState::Dead, SHOWN).await?;
    let pending = queue.latest_of(&b.id, JobState::Pending, SHOWN).await?;
    let retried = match filters.retried {
        Some(id) => queue.job(id).await?.filter(|j| j.business_id == b.id),
        None => None,
    };
    let asked = Some(filters.system.trim()).filter(|s| !s.is_empty());
    let system: Option<System> = asked.and_then(|s| s.parse().ok());
    // A name no system has (an edited address) matches no attempt, as it did as a string.
    let journal = if asked.is_some() && system.is_none() {
        Vec::new()
    } else {
        read_journal(
            &state.store,
            &JournalFilter {
                business_id: Some(b.id.to_string()),
                system,
                failed_only: filters.failed == "1",
                limit: Some(SHOWN * 2),
                ..JournalFilter::default()
            },
        )
        .await?
    };
    let mut systems: Vec<System> = b.systems.clone();
    for row in &counts {
        if !systems.contains(&row.system) {
            systems.push(row.system);
        }
    }
    let count = |system: System, st: JobState| {
        counts
            .iter()
            .find(|r| r.system == system && r.state == st)
            .map_or(0, |r| r.count)
    };
    let tz = b.timezone;
    let job_rows = |jobs: &[crate::sync::jobs::Job]| -> Markup {
        html! {
            @for j in jobs {
                tr {
                    td { (j.id) }
                    td { (j.system) }
                    td { (j.operation) }
                    td { (j.attempts) }
                    td { (local_time(j.run_at, tz)) }
                    td.error { (j.last_error.as_deref().map(mask_text).unwrap_or_default()) }
                    td {
                        form.inline method="post" action=(format!("/console/b/{}/jobs/{}/retry", b.id, j.id)) {
                            input type="hidden" name="csrf" value=(v.session.csrf);
                            button type="submit" data-job=(j.id) { (tr(lang, "console-retry-now")) }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        @if let Some(id) = filters.retried {
            p.flash role="status" id="retry-result" {
                @match &retried {
                    Some(job) => (tr_args(lang, "console-retried", &[("job", id.into()), ("state", tr(lang, state_words(job.state)).into())])),
                    None => (tr_args(lang, "console-retry-refused", &[("job", id.into())])),
                }
            }
        }
        section {
            h2 { (tr(lang, "console-integrations")) }
            table {
                thead { tr {
                    th { (tr(lang, "console-system")) } th { (tr(lang, "console-state")) }
                    th { (tr(lang, "console-since")) } th { (tr(lang, "console-last-success")) }
                    th { (tr(lang, "console-last-error")) }
                } }
                tbody {
                    @for h in &health {
                        tr class=(format!("health-{}", match h.state { Health::Up => "up", Health::Degraded => "degraded", Health::Down => "down" })) {
                            td { (h.system) }
                            td { (tr(lang, health_words(h.state))) }
                            td { (h.since.map(|t| local_time(t, tz)).unwrap_or_default()) }
                            td { (last_ok.iter().find(|(s, _)| *s == h.system).map(|(_, t)| local_time(*t, tz)).unwrap_or_else(|| "—".into())) }
                            td.error { (h.last_error.as_deref().map(mask_text).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        section {
            h2 { (tr(lang, "console-queue")) }
            table {
                thead { tr {
                    th { (tr(lang, "console-system")) }
                    @for st in [JobState::Pending, JobState::Running, JobState::Done, JobState::Dead] {
                        th.num { (tr(lang, state_words(st))) }
                    }
                } }
                tbody {
                    @for s in &systems {
                        tr {
                            td { (s) }
                            @for st in [JobState::Pending, JobState::Running, JobState::Done, JobState::Dead] {
                                td.num { (count(*s, st)) }
                            }
                        }
                    }
                }
            }
        }
        @for (key, jobs) in [("console-dead-jobs", &dead), ("console-pending-jobs", &pending)] {
            section {
                h2 { (tr(lang, key)) }
                @if jobs.is_empty() {
                    p.empty { (tr(lang, "console-none")) }
                } @else {
                    table {
                        thead { tr {
                            th { "#" } th { (tr(lang, "console-system")) } th { (tr(lang, "console-operation")) }
                            th { (tr(lang, "console-attempts")) } th { (tr(lang, "console-next-try")) }
                            th { (tr(lang, "console-last-error")) } th {}
                        } }
                        tbody { (job_rows(jobs)) }
                    }
                }
            }
        }
        section {
            h2 { (tr(lang, "console-journal")) }
            form.filters method="get" {
                label { (tr(lang, "console-system")) " "
                    select name="system" {
                        option value="" { (tr(lang, "console-all")) }
                        @for s in &systems {
                            option value=(s) selected[system == Some(*s)] { (s) }
                        }
                        option value="console" selected[system == Some(System::Console)] { "console" }
                    }
                }
                label { input type="checkbox" name="failed" value="1" checked[filters.failed == "1"]; " " (tr(lang, "console-failed-only")) }
                button type="submit" { (tr(lang, "console-show")) }
            }
            table {
                thead { tr {
                    th { (tr(lang, "console-when")) } th { (tr(lang, "console-system")) }
                    th { (tr(lang, "console-operation")) } th { "#" } th { (tr(lang, "console-outcome")) }
                    th { (tr(lang, "console-details")) }
                } }
                tbody {
                    @for e in journal.iter().rev() {
                        tr class=[e.failed().then_some("failed")] {
                            td { (local_time(e.at, tz)) }
                            td { (e.system) }
                            td { (e.operation) }
                            td { @if e.job_id > 0 { (e.job_id) } }
                            td { (e.outcome) @if let Some(s) = e.http_status { " (" (s) ")" } }
                            td.error { (e.error.as_deref().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    let path = format!("/console/b/{}/deliveries", b.id);
    Ok(page(
        &v,
        Page::Deliveries,
        &tr(lang, "console-nav-deliveries"),
        &path,
        body,
    ))
}

/// "Retry now": a dead job is pending again with a fresh age, a waiting one runs at once.
pub async fn retry(
    State(state): State<Arc<ConsoleState>>,
    Path((business, job)): Path<(String, i64)>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Deliveries).await?;
    check_csrf(&v.session, &form.csrf, v.lang)?;
    let queue = Queue::new(state.store.clone());
    let before = queue
        .revive(job, Some(&v.business.id), state.clock.now())
        .await?;
    let outcome = match before {
        Some(JobState::Dead) => "revived",
        Some(_) => "runs now",
        None => "refused",
    };
    super::journal_for(
        &state,
        &v.business.id,
        Some(v.login()),
        "retry",
        job,
        outcome,
        &format!("job {job}"),
    )
    .await;
    Ok(Redirect::to(&format!(
        "/console/b/{}/deliveries?retried={job}",
        v.business.id
    ))
    .into_response())
}
