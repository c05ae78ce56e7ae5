//! Bookings and clients (manager): each booking with its state in our store, the schedule, the
//! CRM and the chat, disagreements flagged; a client's card with their bookings, where they came
//! from, and the conversation as it happened.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use maud::{Markup, html};

use super::auth::{CsrfForm, Refusal, check_csrf};
use super::layout::{local_time, page, tr, tr_args};
use super::{ConsoleState, Page, Visit, visit};
use crate::domain::{Booking, BookingStatus, Source};
use crate::i18n::Lang;
use crate::lifecycle::report::{Side, booking_sides};
use crate::store::forget::Forgot;

/// Bookings listed at once: each costs a few lookups for its sides.
const SHOWN: i64 = 100;

#[derive(serde::Deserialize, Default)]
pub struct Period {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// Set after a client was erased from here: the list says so.
    #[serde(default)]
    forgot: Option<String>,
}

/// The client card's flash after an erasure that waits for deliveries.
#[derive(serde::Deserialize, Default)]
pub struct CardFlash {
    #[serde(default)]
    waiting: Option<i64>,
}

/// A period of whole days in the business's zone: `[from 00:00, to 24:00)`.
pub fn period_in(
    tz: chrono_tz::Tz,
    from: &str,
    to: &str,
    default_from: NaiveDate,
    default_to: NaiveDate,
) -> (NaiveDate, NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    let parse =
        |s: &str, d: NaiveDate| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").unwrap_or(d);
    let (mut from, mut to) = (parse(from, default_from), parse(to, default_to));
    if to < from {
        std::mem::swap(&mut from, &mut to);
    }
    // A period longer than a few years is a typo, not a question.
    if (to - from).num_days() > 3 * 366 {
        from = to - Duration::days(3 * 366);
    }
    let start = |d: NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        tz.from_local_datetime(&midnight)
            .earliest()
            .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
    };
    (from, to, start(from), start(to + Duration::days(1)))
}

pub fn status_words(s: BookingStatus) -> &'static str {
    match s {
        BookingStatus::Requested => "console-status-requested",
        BookingStatus::Booked => "console-status-booked",
        BookingStatus::CancelledByClient => "console-status-cancelled-by-client",
        BookingStatus::CancelledByBusiness => "console-status-cancelled-by-business",
        BookingStatus::Visited => "console-status-visited",
        BookingStatus::NoShow => "console-status-no-show",
        BookingStatus::Failed => "console-status-failed",
    }
}

/// Where a booking came from, as a marketer names it.
pub fn source_label(lang: Lang, source: &Source) -> String {
    if let Some(name) = &source.link_name {
        return name.clone();
    }
    if let Some(payload) = &source.payload {
        return payload.clone();
    }
    let utm: Vec<&str> = [&source.utm.source, &source.utm.medium, &source.utm.campaign]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if utm.is_empty() {
        tr(lang, "console-source-direct")
    } else {
        utm.join(" / ")
    }
}

fn side_cell(lang: Lang, side: Option<&Side>) -> Markup {
    html! {
        @match side {
            None => "—",
            Some(side) => {
                @match &side.external_id {
                    Some(id) => { "#" (id) }
                    None => { (tr(lang, "console-not-linked")) }
                }
                @if let Some(seen) = &side.seen {
                    br; small { (tr(lang, "console-seen")) " " (seen) }
                }
                @if !side.agrees {
                    br; strong.disagrees { "⚠ " (tr(lang, "console-disagrees")) }
                }
                @if let Some((op, state)) = &side.last_job {
                    br; small { (op) ": " (state) }
                }
            }
        }
    }
}

async fn booking_rows(
    state: &ConsoleState,
    v: &Visit,
    rows: &[(Option<String>, Booking)],
) -> Result<Markup, Refusal> {
    let (lang, b) = (v.lang, &*v.business);
    let cards = Page::Clients.allowed(v.session.user.role);
    let mut sides = Vec::with_capacity(rows.len());
    for (_, booking) in rows {
        sides.push(booking_sides(&state.store, &b.id, b.schedule, b.crm, booking).await?);
    }
    Ok(html! {
        table.bookings {
            thead { tr {
                th { (tr(lang, "console-when")) }
                @if rows.iter().any(|(c, _)| c.is_some()) { th { (tr(lang, "console-client")) } }
                th { (tr(lang, "console-service")) }
                th.num { (tr(lang, "console-price")) }
                th { (tr(lang, "console-source")) }
                th { (tr(lang, "console-store")) }
                th { (tr(lang, "console-schedule")) }
                th { (tr(lang, "console-crm")) }
                th { (tr(lang, "console-chat")) }
            } }
            tbody {
                @for ((client, booking), sides) in rows.iter().zip(&sides) {
                    tr class=[sides.iter().any(|s| !s.agrees).then_some("disagrees")] data-booking=(booking.id) {
                        td { (local_time(booking.start, b.timezone)) }
                        @if let Some(client) = client {
                            td {
                                @if cards {
                                    a href=(format!("/console/b/{}/clients/{client}", b.id)) { (booking.client_name) }
                                } @else { (booking.client_name) }
                                br; small { (booking.client_phone.formatted()) }
                            }
                        }
                        td { (booking.service_name) br; small { (booking.master_name) } }
                        td.num { (booking.price.to_string()) }
                        td { (source_label(lang, &booking.source)) }
                        td { (tr(lang, status_words(booking.status))) }
                        td { (side_cell(lang, sides.iter().find(|s| s.system == b.schedule))) }
                        td { (side_cell(lang, b.crm.and_then(|crm| sides.iter().find(|s| s.system == crm)))) }
                        td { (booking.chat.as_ref().map(|c| c.channel.as_str()).unwrap_or("—")) }
                    }
                }
            }
        }
    })
}

pub async fn list(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    Query(period): Query<Period>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Bookings).await?;
    let (lang, b) = (v.lang, &*v.business);
    let today = state.clock.now().with_timezone(&b.timezone).date_naive();
    let (from, to, start, end) = period_in(
        b.timezone,
        &period.from,
        &period.to,
        today - Duration::days(30),
        today + Duration::days(30),
    );
    let found = state
        .store
        .bookings_starting_between(&b.id, start, end, SHOWN + 1)
        .await?;
    let more = found.len() as i64 > SHOWN;
    let rows: Vec<(Option<String>, Booking)> = found
        .into_iter()
        .take(SHOWN as usize)
        .map(|(client, booking)| (Some(client), booking))
        .collect();
    let table = booking_rows(&state, &v, &rows).await?;
    let body = html! {
        @if period.forgot.is_some() {
            p.flash #forget-result role="status" { (tr(lang, "console-forgot")) }
        }
        form.filters method="get" {
            label { (tr(lang, "console-from")) " " input type="date" name="from" value=(from); }
            label { (tr(lang, "console-to")) " " input type="date" name="to" value=(to); }
            button type="submit" { (tr(lang, "console-show")) }
        }
        @if rows.is_empty() {
            p.empty { (tr(lang, "console-none")) }
        } @else {
            (table)
        }
        @if more {
            p.note { (tr_args(lang, "console-first-n", &[("count", SHOWN.into())])) }
        }
    };
    let path = format!("/console/b/{}/bookings", b.id);
    Ok(page(
        &v,
        Page::Bookings,
        &tr(lang, "console-nav-bookings"),
        &path,
        body,
    ))
}

pub async fn client(
    State(state): State<Arc<ConsoleState>>,
    Path((business, client)): Path<(String, String)>,
    Query(flash): Query<CardFlash>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Clients).await?;
    let (lang, b) = (v.lang, &*v.business);
    let Some((card, bookings)) = state.store.client_with_bookings(&b.id, &client).await? else {
        return Err(Refusal::NotFound(lang));
    };
    // The source a client is counted under is that of their first booking.
    let first = bookings
        .iter()
        .min_by_key(|x| x.created_at)
        .map(|f| source_label(lang, &f.source));
    let mut chats: Vec<String> = bookings
        .iter()
        .filter_map(|x| x.chat.as_ref().map(|c| c.key()))
        .collect();
    chats.sort();
    chats.dedup();
    let now = state.clock.now();
    let mut transcripts = Vec::with_capacity(chats.len());
    for chat in &chats {
        let lines = state
            .store
            .chat_lines(&b.id, chat, DateTime::UNIX_EPOCH, now)
            .await?;
        transcripts.push((chat.clone(), lines));
    }
    let rows: Vec<(Option<String>, Booking)> = bookings.into_iter().map(|x| (None, x)).collect();
    let table = booking_rows(&state, &v, &rows).await?;
    let forget_action = format!("/console/b/{}/clients/{}/forget", b.id, card.id);
    let body = html! {
        @if let Some(n) = flash.waiting {
            p.flash #forget-result role="status" {
                (tr_args(lang, "console-forget-waiting", &[("count", n.into())]))
            }
        }
        dl.card {
            dt { (tr(lang, "console-phone")) } dd { (card.phone.formatted()) }
            @if let Some(email) = &card.email { dt { "E-mail" } dd { (email.as_str()) } }
            dt { (tr(lang, "console-source")) }
            dd { (first.unwrap_or_else(|| "—".into())) }
        }
        h2 { (tr(lang, "console-nav-bookings")) }
        (table)
        h2 { (tr(lang, "console-transcript")) }
        @if transcripts.iter().all(|(_, l)| l.is_empty()) {
            p.empty { (tr(lang, "console-none")) }
        }
        @for (chat, lines) in &transcripts {
            @if !lines.is_empty() {
                section.transcript data-chat=(chat) {
                    @for line in lines {
                        div class=(format!("line {}", if line.author == "client" { "client" } else { "bot" })) {
                            small { (local_time(line.at, b.timezone)) }
                            p { (line.text) }
                        }
                    }
                }
            }
        }
        // Erasure is final: it sits folded at the end, behind a second click.
        @if !card.phone.is_erased() { details.forget {
            summary { (tr(lang, "console-forget")) }
            p { (tr(lang, "console-forget-explain")) }
            form method="post" action=(forget_action) {
                input type="hidden" name="csrf" value=(v.session.csrf);
                button.danger type="submit" { (tr(lang, "console-forget-confirm")) }
            }
        } }
    };
    let title = if card.phone.is_erased() {
        tr(lang, "console-client-erased")
    } else {
        card.name.clone()
    };
    let path = format!("/console/b/{}/clients/{}", b.id, card.id);
    Ok(page(&v, Page::Clients, &title, &path, body))
}

/// Erases the client's personal data from the store (152-ФЗ), as `zapis forget` does, and
/// journals who asked. While deliveries about them are on their way the erasure is recorded
/// and runs after the last one; the card says so.
pub async fn forget(
    State(state): State<Arc<ConsoleState>>,
    Path((business, client)): Path<(String, String)>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Clients).await?;
    check_csrf(&v.session, &form.csrf, v.lang)?;
    let b = &*v.business;
    let Some((card, _)) = state.store.client_with_bookings(&b.id, &client).await? else {
        return Err(Refusal::NotFound(v.lang));
    };
    let forgot = state
        .store
        .forget(&b.id, &card.phone, state.clock.now())
        .await?;
    let (outcome, detail, to) = match forgot {
        Forgot::Erased(erased) => (
            "erased",
            format!("{}: {erased}", card.phone.masked()),
            format!("/console/b/{}/bookings?forgot=1", b.id),
        ),
        Forgot::Waiting { deliveries } => (
            "waiting",
            format!(
                "{}: {deliveries} deliveries on their way",
                card.phone.masked()
            ),
            format!(
                "/console/b/{}/clients/{}?waiting={deliveries}",
                b.id, card.id
            ),
        ),
    };
    super::journal_for(
        &state,
        &b.id,
        Some(v.login()),
        "forget",
        0,
        outcome,
        &detail,
    )
    .await;
    Ok(Redirect::to(&to).into_response())
}
