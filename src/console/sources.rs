//! Sources (marketer): what each deep link, tracked link and campaign brought over a period —
//! chats, contacts left, bookings, cancellations, visits, no-shows, revenue — as a chart, a
//! table and a CSV; and the tracked links themselves, created here, with their Telegram and MAX
//! addresses and a QR code to print.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::{Markup, html};

use super::auth::{Refusal, check_csrf};
use super::layout::{page, tr, tr_args};
use super::{BusinessView, ConsoleState, Page, visit};
use crate::domain::Utm;
use crate::i18n::Lang;
use crate::store::{StoreError, TrackedLink};

/// The longest name or UTM value a link may carry; they end up in CRM fields and URLs.
const MAX_LINK_FIELD: usize = 200;

fn telegram_link(b: &BusinessView, token: &str) -> Option<String> {
    b.telegram_bot
        .as_deref()
        .map(|bot| format!("https://t.me/{bot}?start={token}"))
}

fn max_link(b: &BusinessView, token: &str) -> Option<String> {
    b.max_bot
        .as_deref()
        .map(|bot| format!("https://max.ru/{bot}?start={token}"))
}

#[derive(serde::Deserialize, Default)]
pub struct SourcesQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// `week` for weekly bars; days otherwise.
    #[serde(default)]
    bucket: String,
    /// A flash after creating a link.
    #[serde(default)]
    created: String,
    #[serde(default)]
    error: String,
}

async fn links_section(
    state: &ConsoleState,
    lang: Lang,
    b: &BusinessView,
    csrf: &str,
) -> Result<Markup, StoreError> {
    let links = state.store.tracked_links(&b.id).await?;
    Ok(html! {
        section #links {
            h2 { (tr(lang, "console-links")) }
            @if links.is_empty() {
                p.empty { (tr(lang, "console-none")) }
            } @else {
                table.links {
                    thead { tr {
                        th { (tr(lang, "console-link-name")) } th { "UTM" }
                        th { (tr(lang, "console-addresses")) } th { "QR" }
                    } }
                    tbody {
                        @for s in &links {
                            @let token = &s.link.token;
                            tr data-link=(s.link.name) {
                                td { (s.link.name) br; small { code { (token) } } }
                                td { (utm_text(&s.link.utm)) }
                                td {
                                    @if let Some(url) = telegram_link(b, token) { a href=(url) { (url) } br; }
                                    @if let Some(url) = max_link(b, token) { a href=(url) { (url) } }
                                    @if b.telegram_bot.is_none() && b.max_bot.is_none() {
                                        small { (tr(lang, "console-no-bot-username")) } br; code { "start=" (token) }
                                    }
                                }
                                td {
                                    @if b.telegram_bot.is_some() || b.max_bot.is_some() {
                                        a href=(format!("/console/b/{}/links/{token}/qr.svg", b.id)) {
                                            img.qr src=(format!("/console/b/{}/links/{token}/qr.svg", b.id)) alt="QR" width="96" height="96";
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { (tr(lang, "console-link-new")) }
            form.stack method="post" action=(format!("/console/b/{}/links", b.id)) {
                input type="hidden" name="csrf" value=(csrf);
                label { (tr(lang, "console-link-name")) input name="name" required maxlength="200"; }
                @for field in ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"] {
                    label { (field) input name=(field) maxlength="200"; }
                }
                button type="submit" { (tr(lang, "console-link-create")) }
            }
        }
    })
}

fn utm_text(utm: &Utm) -> String {
    [
        ("source", &utm.source),
        ("medium", &utm.medium),
        ("campaign", &utm.campaign),
        ("content", &utm.content),
        ("term", &utm.term),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(", ")
}

pub async fn page_of(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    Query(q): Query<SourcesQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Sources).await?;
    let (lang, b) = (v.lang, &*v.business);
    let funnel = super::funnel::section(&state, lang, b, &q.from, &q.to, &q.bucket).await?;
    let links = links_section(&state, lang, b, &v.session.csrf).await?;
    let body = html! {
        @if !q.created.is_empty() {
            p.flash role="status" { (tr_args(lang, "console-link-created", &[("name", q.created.clone().into())])) }
        }
        @if !q.error.is_empty() {
            p.error role="alert" { (tr(lang, match q.error.as_str() {
                "taken" => "console-link-taken",
                _ => "console-link-invalid",
            })) }
        }
        (funnel)
        (links)
    };
    let path = format!("/console/b/{}/sources", b.id);
    Ok(page(
        &v,
        Page::Sources,
        &tr(lang, "console-nav-sources"),
        &path,
        body,
    ))
}

pub async fn csv(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    Query(q): Query<SourcesQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Sources).await?;
    let (name, text) = super::funnel::csv(&state, v.lang, &v.business, &q.from, &q.to).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
pub struct NewLink {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    utm_source: String,
    #[serde(default)]
    utm_medium: String,
    #[serde(default)]
    utm_campaign: String,
    #[serde(default)]
    utm_content: String,
    #[serde(default)]
    utm_term: String,
}

pub async fn create_link(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<NewLink>,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Sources).await?;
    check_csrf(&v.session, &form.csrf, v.lang)?;
    let back = format!("/console/b/{}/sources", v.business.id);
    let field = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let fields = [
        &form.name,
        &form.utm_source,
        &form.utm_medium,
        &form.utm_campaign,
        &form.utm_content,
        &form.utm_term,
    ];
    let name = form.name.trim().to_string();
    if name.is_empty()
        || fields
            .iter()
            .any(|f| f.chars().count() > MAX_LINK_FIELD || f.chars().any(char::is_control))
    {
        return Ok(Redirect::to(&format!("{back}?error=invalid")).into_response());
    }
    let link = TrackedLink {
        token: TrackedLink::new_token(),
        name: name.clone(),
        utm: Utm {
            source: field(&form.utm_source),
            medium: field(&form.utm_medium),
            campaign: field(&form.utm_campaign),
            content: field(&form.utm_content),
            term: field(&form.utm_term),
        },
    };
    match state
        .store
        .create_tracked_link(&v.business.id, &link, state.clock.now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Ok(Redirect::to(&format!("{back}?error=taken")).into_response());
        }
        Err(e) => return Err(e.into()),
    }
    super::journal_for(
        &state,
        &v.business.id,
        Some(v.login()),
        "link.create",
        0,
        "done",
        &format!("link {name:?} ({})", link.token),
    )
    .await;
    Ok(Redirect::to(&format!(
        "{back}?created={}#links",
        super::layout::urlencode(&name)
    ))
    .into_response())
}

#[derive(serde::Deserialize, Default)]
pub struct QrFor {
    /// `max` for the MAX address; Telegram's otherwise.
    #[serde(default, rename = "for")]
    messenger: String,
}

/// The link's address as a QR code, SVG, for print.
pub async fn qr(
    State(state): State<Arc<ConsoleState>>,
    Path((business, token)): Path<(String, String)>,
    Query(which): Query<QrFor>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let v = visit(&state, &headers, &jar, &business, Page::Sources).await?;
    let Some(link) = state.store.tracked_link(&v.business.id, &token).await? else {
        return Err(Refusal::NotFound(v.lang));
    };
    let url = if which.messenger == "max" {
        max_link(&v.business, &link.token)
    } else {
        telegram_link(&v.business, &link.token).or_else(|| max_link(&v.business, &link.token))
    };
    let Some(url) = url else {
        return Err(Refusal::NotFound(v.lang));
    };
    let code = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| Refusal::Broken(v.lang, format!("QR code of {url}: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/svg+xml")],
        svg,
    )
        .into_response())
}
