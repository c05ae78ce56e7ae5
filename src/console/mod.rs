//! The console at `/console`: what marketers, managers and operators see in a browser. Pages are
//! HTML rendered on the server (readable without JavaScript), in Russian or English, each
//! behind a session and a role, each scoped to one business the user may see:
//!
//! | page        | owner | manager | marketer | operator |
//! |-------------|-------|---------|----------|----------|
//! | sources     | ✓     |         | ✓        |          |
//! | bookings    | ✓     | ✓       |          |          |
//! | clients     | ✓     | ✓       |          |          |
//! | deliveries  | ✓     |         |          | ✓        |
//! | setup       | ✓     |         |          | ✓        |
//!
//! Every change a user makes (a retry, a new link, signing in) is journaled with their login.

pub mod auth;
mod bookings;
mod deliveries;
mod funnel;
pub mod layout;
mod setup;
mod sources;

use crate::domain::BusinessId;
use crate::domain::System;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono_tz::Tz;
use secrecy::SecretString;

use crate::booking::BookingSystem;
use crate::clock::Clock;
use crate::i18n::Lang;
use crate::store::{ConsoleSession, Role, Store};
use crate::sync::journal::{JournalEntry, insert_journal};
use auth::Refusal;

/// What the console knows of one business besides its rows in the store.
#[derive(Clone)]
pub struct BusinessView {
    pub id: BusinessId,
    pub name: String,
    pub timezone: Tz,
    pub telegram_bot: Option<String>,
    pub max_bot: Option<String>,
    /// The schedule's system name (`yclients`, `dikidi`, `sandbox`).
    pub schedule: System,
    pub crm: Option<System>,
    /// Systems the delivery engine writes to for this business.
    pub systems: Vec<System>,
    /// Sources whose webhooks are read, for the setup page's URLs.
    pub webhook_sources: Vec<&'static str>,
    /// Where its webhook URLs' paths start: `/webhooks/`, or `/webhooks/<id>/` in a deployment
    /// of several businesses.
    pub webhook_prefix: String,
    pub webhook_secret: SecretString,
    pub booking: Arc<dyn BookingSystem>,
    /// Read for the setup page's pipelines, stages and fields.
    pub crm_client: Option<Arc<dyn crate::crm::Crm>>,
}

pub struct ConsoleState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Replaced whole when a deployment's businesses change ([`ConsoleState::set_businesses`]).
    businesses: std::sync::RwLock<Vec<Arc<BusinessView>>>,
    /// The address people reach this service at (`http.public_url`), for webhook URLs.
    pub public_url: Option<String>,
    /// Cookies carry `Secure` when the public address is https.
    pub secure_cookies: bool,
    pub throttle: auth::Throttle,
    /// Verified against when a login does not exist, so both cost the same.
    pub decoy_hash: String,
}

impl ConsoleState {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        businesses: Vec<BusinessView>,
        public_url: Option<String>,
    ) -> Result<ConsoleState, auth::AuthError> {
        let secure_cookies = public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        Ok(ConsoleState {
            store,
            clock,
            businesses: std::sync::RwLock::new(businesses.into_iter().map(Arc::new).collect()),
            public_url,
            secure_cookies,
            throttle: auth::Throttle::default(),
            decoy_hash: auth::hash_password(&auth::random_token())?,
        })
    }

    fn business(&self, id: &str) -> Option<Arc<BusinessView>> {
        self.read_businesses().iter().find(|b| b.id == id).cloned()
    }

    fn read_businesses(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<BusinessView>>> {
        self.businesses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The businesses shown from now on, as a deployment's are added, changed or removed.
    pub fn set_businesses(&self, businesses: Vec<BusinessView>) {
        *self
            .businesses
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            businesses.into_iter().map(Arc::new).collect();
    }
}

/// The pages a role may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Sources,
    Bookings,
    Clients,
    Deliveries,
    Setup,
}

impl Page {
    pub const ALL: [Page; 5] = [
        Page::Sources,
        Page::Bookings,
        Page::Clients,
        Page::Deliveries,
        Page::Setup,
    ];

    pub fn allowed(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Owner)
                | (Page::Sources, Role::Marketer)
                | (Page::Bookings | Page::Clients, Role::Manager)
                | (Page::Deliveries | Page::Setup, Role::Operator)
        )
    }

    fn slug(self) -> &'static str {
        match self {
            Page::Sources => "sources",
            Page::Bookings => "bookings",
            Page::Clients => "clients",
            Page::Deliveries => "deliveries",
            Page::Setup => "setup",
        }
    }
}

/// A signed-in user on a page of a business they may see, in their language.
pub struct Visit {
    pub session: ConsoleSession,
    pub business: Arc<BusinessView>,
    pub lang: Lang,
}

impl Visit {
    pub fn login(&self) -> &str {
        &self.session.user.login
    }
}

/// Signs the request in and checks the page and the business, in that order: without a
/// session nothing is said about what exists.
pub async fn visit(
    state: &ConsoleState,
    headers: &HeaderMap,
    jar: &CookieJar,
    business: &str,
    page: Page,
) -> Result<Visit, Refusal> {
    let lang = lang_of(headers, jar);
    let session = auth::signed_in(state, jar).await?;
    if !page.allowed(session.user.role) || !session.user.may_see(business) {
        return Err(Refusal::Forbidden(lang));
    }
    let business = state.business(business).ok_or(Refusal::NotFound(lang))?;
    Ok(Visit {
        session,
        business,
        lang,
    })
}

const LANG_COOKIE: &str = "zapis_lang";

/// The chosen language (a cookie), else the browser's first preference we speak, else Russian.
pub fn lang_of(headers: &HeaderMap, jar: &CookieJar) -> Lang {
    if let Some(lang) = jar
        .get(LANG_COOKIE)
        .and_then(|c| Lang::from_code(c.value()))
    {
        return lang;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|tag| Lang::from_code(tag.split(';').next()?))
        })
        .unwrap_or(Lang::Ru)
}

#[derive(serde::Deserialize)]
struct LangChoice {
    to: String,
    #[serde(default)]
    back: String,
}

/// Switches the language and goes back to the page it was chosen on (only a console page, so
/// the link cannot send anyone elsewhere).
async fn choose_lang(Query(choice): Query<LangChoice>, jar: CookieJar) -> Response {
    let lang = Lang::from_code(&choice.to).unwrap_or(Lang::Ru);
    let code = match lang {
        Lang::Ru => "ru",
        Lang::En => "en",
    };
    let back = if choice.back.starts_with("/console") && !choice.back.starts_with("//") {
        choice.back
    } else {
        "/console".to_string()
    };
    let cookie = Cookie::build((LANG_COOKIE, code))
        .path("/console")
        .same_site(SameSite::Strict)
        .build();
    (jar.add(cookie), Redirect::to(&back)).into_response()
}

/// Journals a user's action: who, what, how it went.
pub async fn journal(
    state: &ConsoleState,
    login: Option<&str>,
    operation: &str,
    outcome: &str,
    detail: &str,
) {
    journal_for(state, "", login, operation, 0, outcome, detail).await;
}

pub async fn journal_for(
    state: &ConsoleState,
    business: &str,
    login: Option<&str>,
    operation: &str,
    job_id: i64,
    outcome: &str,
    detail: &str,
) {
    let who = login.map_or_else(|| "someone".to_string(), |l| format!("by {l}"));
    let entry = JournalEntry {
        at: state.clock.now(),
        business_id: business.to_string(),
        system: System::Console,
        operation: operation.into(),
        job_id,
        attempt: 0,
        outcome: outcome.into(),
        http_status: None,
        duration_ms: 0,
        error: Some(if detail.is_empty() {
            who
        } else {
            format!("{who}: {}", crate::sync::journal::mask_text(detail))
        }),
    };
    if let Err(e) = insert_journal(&state.store, &entry).await {
        tracing::error!(error = %e, operation, "cannot journal a console action");
    }
}

/// `/console`: to the first page the user may open, or to sign in.
async fn home(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let lang = lang_of(&headers, &jar);
    let session = auth::signed_in(&state, &jar).await?;
    let first = state
        .read_businesses()
        .iter()
        .find(|b| session.user.may_see(&b.id))
        .cloned();
    let Some(business) = first else {
        return Ok(layout::no_business(lang, &session));
    };
    Ok(Redirect::to(&format!("/console/b/{}", business.id)).into_response())
}

async fn business_home(
    State(state): State<Arc<ConsoleState>>,
    Path(business): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, Refusal> {
    let lang = lang_of(&headers, &jar);
    let session = auth::signed_in(&state, &jar).await?;
    if !session.user.may_see(&business) {
        return Err(Refusal::Forbidden(lang));
    }
    let business = state.business(&business).ok_or(Refusal::NotFound(lang))?;
    let page = Page::ALL
        .into_iter()
        .find(|p| *p != Page::Clients && p.allowed(session.user.role))
        .ok_or(Refusal::Forbidden(lang))?;
    Ok(Redirect::to(&format!("/console/b/{}/{}", business.id, page.slug())).into_response())
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

/// No page of the console may be framed, cached by a shared cache, or load anything from
/// elsewhere; forms post only here.
async fn harden(mut answer: Response) -> Response {
    let h = answer.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    answer
}

/// Forms are a few fields; anything larger is refused before it is read.
const MAX_FORM: usize = 16 * 1024;

pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/lang", get(choose_lang))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/b/{business}", get(business_home))
        .route("/console/b/{business}/sources", get(sources::page_of))
        .route("/console/b/{business}/sources.csv", get(sources::csv))
        .route("/console/b/{business}/links", post(sources::create_link))
        .route(
            "/console/b/{business}/links/{token}/qr.svg",
            get(sources::qr),
        )
        .route("/console/b/{business}/bookings", get(bookings::list))
        .route(
            "/console/b/{business}/clients/{client}",
            get(bookings::client),
        )
        .route(
            "/console/b/{business}/clients/{client}/forget",
            post(bookings::forget),
        )
        .route("/console/b/{business}/deliveries", get(deliveries::page_of))
        .route(
            "/console/b/{business}/jobs/{job}/retry",
            post(deliveries::retry),
        )
        .route("/console/b/{business}/setup", get(setup::page_of))
        .layer(axum::middleware::map_response(harden))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(state)
}

#[cfg(test)]
mod tests;
