//! amoCRM / Kommo API v4 over HTTPS. Wire types mirror the vendor JSON and stay private here;
//! callers see the [`Crm`] seam. What this relies on is listed, with sources, in
//! docs/amocrm.md.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::config::{AMO_LOST_STATUS_ID, AmoCrmConfig};
use super::tokens::{TokenPair, TokenStore};
use super::{
    ContactDraft, ContactRecord, ContactRef, ContactRequest, CreatedLead, Crm, CrmError, CrmLead,
    FieldError, LeadRequest, Stage, TRANSCRIPT_HEADER, TaskRequest, TranscriptLine,
    transcript_notes,
};
use crate::clock::Clock;
use crate::domain::Booking;
use crate::normalize::{Email, Phone, is_mobile_phone, unicode_email};
use crate::store::Store;

pub const SYSTEM: &str = "amocrm";

/// Documented batch ceilings: complex leads ≤ 50; plain adds "up to 250, recommended ≤ 50".
const BATCH: usize = 50;
/// Plain contact adds and updates take up to 250 per request (crm-apis.md §1.11), as do pages.
pub const CONTACT_BATCH: usize = 250;
/// Refresh this long before the access token expires, so no request races its expiry.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// amoCRM answers 403 to every request from an IP or account it blocked for exceeding the rate
/// limit; the block is temporary, so this is retried, slowly.
const BLOCKED_RETRY: Duration = Duration::from_secs(600);
const AUTH_FIX: &str = "re-run `zapis amocrm auth --code CODE` with a fresh authorisation code from the integration's settings";

/// One limiter per account (origin), shared by every client of that account in the process.
static LIMITERS: LazyLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn limiter_for(base_url: &Url, per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let key = format!("{}|{per_second}", base_url.origin().ascii_serialization());
    let mut map = LIMITERS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(|| {
            // Burst of one: requests are evenly spaced, so no sliding second ever holds more
            // than `per_second` of them (a burst allowance would let a window hold nearly 2x).
            let period = Duration::from_secs(1) / per_second.max(1);
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

/// The amoCRM client. Cheap to clone; clones share the token cache and rate limiter.
#[derive(Clone)]
pub struct AmoCrm {
    inner: Arc<Inner>,
}

struct Inner {
    config: AmoCrmConfig,
    http: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    auth: AuthMode,
    clock: Arc<dyn Clock>,
    store: Store,
    business_id: String,
    /// What the account's lead fields say, read once and kept: every booking needs it.
    account: tokio::sync::Mutex<AccountFields>,
}

#[derive(Default)]
struct AccountFields {
    lead_fields: Option<Arc<Vec<LeadField>>>,
    booking_field: Option<(i64, FieldOrigin)>,
}

/// The name of the text field of leads that holds our booking id, when zapis finds or creates
/// it itself (no `booking_id_field_id` configured).
pub const BOOKING_FIELD_NAME: &str = "zapis: номер записи";
/// Where the field's id is kept in our store (`links`: entity, entity id).
const BOOKING_FIELD_LINK: (&str, &str) = ("crm_field", "lead_booking_id");
/// amoCRM's tracking fields of leads, by code, and the UTM parameter each holds.
const TRACKING_CODES: [(&str, &str); 5] = [
    ("UTM_SOURCE", "utm_source"),
    ("UTM_MEDIUM", "utm_medium"),
    ("UTM_CAMPAIGN", "utm_campaign"),
    ("UTM_CONTENT", "utm_content"),
    ("UTM_TERM", "utm_term"),
];
/// First line of the note carrying tracking values the account has no field for.
pub const UNTRACKED_NOTE_HEADER: &str = "Метки перехода (в amoCRM нет полей для них)";
/// The field list comes 50 to a page; an account has a few dozen fields, so this bounds what
/// is read without ever cutting a real list short.
const MAX_FIELD_PAGES: u32 = 40;

/// A custom field of leads, as the account defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadField {
    pub id: i64,
    pub name: String,
    pub code: Option<String>,
    pub field_type: String,
}

/// Where the booking id field's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrigin {
    /// `crm.amocrm.booking_id_field_id`.
    Configured,
    /// Found or created earlier and kept in our store.
    Stored,
    /// Found in the account by its name.
    Found,
    /// Created now.
    Created,
}

impl std::fmt::Display for FieldOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldOrigin::Configured => "configured (crm.amocrm.booking_id_field_id)",
            FieldOrigin::Stored => "kept in the store",
            FieldOrigin::Found => "found by name",
            FieldOrigin::Created => "created now",
        })
    }
}

/// What `setup()` settled in the account: the booking id field and the tracking fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub booking_field_id: i64,
    pub booking_field_origin: FieldOrigin,
    /// Tracking field codes the account has (values go there by field id).
    pub tracking_present: Vec<String>,
    /// Tracking field codes it lacks (values go into tags and a note instead).
    pub tracking_missing: Vec<String>,
}

impl std::fmt::Display for SetupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "booking id field: {} ({})",
            self.booking_field_id, self.booking_field_origin
        )?;
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            f,
            "tracking fields: {} present; missing: {} (their values go into tags and a note)",
            list(&self.tracking_present),
            list(&self.tracking_missing)
        )
    }
}

/// What a lead needs from the account: the booking id field and the tracking fields by code.
struct LeadContext {
    booking_field: i64,
    tracking: HashMap<&'static str, i64>,
}

enum AuthMode {
    LongLived(SecretString),
    OAuth(OAuth),
}

struct OAuth {
    client_id: String,
    client_secret: SecretString,
    redirect_uri: String,
    tokens: TokenStore,
    /// Held across a refresh so one refresh token is spent by one request only.
    state: tokio::sync::Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    pair: Option<TokenPair>,
}

/// What `check()` found in the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub account_id: i64,
    pub account_name: String,
    pub pipeline_id: i64,
    pub pipeline_name: String,
    pub stages: Vec<(i64, String)>,
}

/// A registered webhook, as amoCRM returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub disabled: bool,
}

impl std::fmt::Debug for AmoCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmoCrm")
            .field("base_url", &self.inner.config.base_url.as_str())
            .finish_non_exhaustive()
    }
}

fn store_error(e: crate::store::StoreError) -> CrmError {
    CrmError::transient(format!("token store: {e}"))
}

impl AmoCrm {
    /// Builds a client. With OAuth the token pair lives in `store` under `business_id`;
    /// run [`AmoCrm::exchange_code`] (CLI `zapis amocrm auth --code CODE`) once first.
    pub fn new(
        config: AmoCrmConfig,
        store: Store,
        business_id: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<AmoCrm, CrmError> {
        config
            .validate()
            .map_err(|e| CrmError::permanent(e.to_string()))?;
        let http = super::http_client(config.timeout_secs)?;
        let auth = match (
            &config.token,
            &config.client_id,
            &config.client_secret,
            &config.redirect_uri,
        ) {
            (Some(token), _, _, _) => AuthMode::LongLived(token.clone()),
            (None, Some(id), Some(secret), Some(redirect)) => AuthMode::OAuth(OAuth {
                client_id: id.clone(),
                client_secret: secret.clone(),
                redirect_uri: redirect.clone(),
                tokens: TokenStore::new(store.clone(), business_id, SYSTEM),
                state: tokio::sync::Mutex::new(TokenState::default()),
            }),
            _ => {
                return Err(CrmError::permanent(
                    "crm.amocrm needs a token or client_id/client_secret/redirect_uri",
                ));
            }
        };
        let limiter = limiter_for(&config.base_url, config.max_requests_per_second);
        Ok(AmoCrm {
            inner: Arc::new(Inner {
                config,
                http,
                limiter,
                auth,
                clock,
                store,
                business_id: business_id.to_string(),
                account: tokio::sync::Mutex::new(AccountFields::default()),
            }),
        })
    }

    pub fn config(&self) -> &AmoCrmConfig {
        &self.inner.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    // ---------------------------------------------------------------- OAuth

    /// Exchanges an authorisation code (valid 20 minutes) for the first token pair and stores
    /// it. Backs `zapis amocrm auth --code CODE`.
    pub async fn exchange_code(&self, code: &str) -> Result<(), CrmError> {
        let AuthMode::OAuth(oauth) = &self.inner.auth else {
            return Err(CrmError::permanent(
                "crm.amocrm uses a long-lived token; an authorisation code is only for OAuth",
            ));
        };
        let mut state = oauth.state.lock().await;
        let pair = self.token_request(oauth, Grant::Code(code)).await?;
        oauth
            .tokens
            .save(&pair, self.now())
            .await
            .map_err(store_error)?;
        state.pair = Some(pair);
        tracing::info!("amoCRM authorised; token pair stored");
        Ok(())
    }

    async fn access_token(&self) -> Result<SecretString, CrmError> {
        let oauth = match &self.inner.auth {
            AuthMode::LongLived(token) => return Ok(token.clone()),
            AuthMode::OAuth(oauth) => oauth,
        };
        let mut state = oauth.state.lock().await;
        if state.pair.is_none() {
            state.pair = oauth.tokens.load().await.map_err(store_error)?;
        }
        let Some(pair) = &state.pair else {
            return Err(CrmError::Auth {
                message: format!("no amoCRM tokens are stored for this business; {AUTH_FIX}"),
            });
        };
        if pair.expires_at - REFRESH_MARGIN <= self.now() {
            self.refresh_locked(oauth, &mut state).await?;
        }
        state
            .pair
            .as_ref()
            .map(|p| p.access_token.clone())
            .ok_or_else(|| CrmError::Auth {
                message: format!("no amoCRM tokens; {AUTH_FIX}"),
            })
    }

    /// After a 401: refresh unless someone already replaced the token that was refused.
    async fn refresh_after_401(&self, refused: &SecretString) -> Result<(), CrmError> {
        let AuthMode::OAuth(oauth) = &self.inner.auth else {
            return Ok(());
        };
        let mut state = oauth.state.lock().await;
        let still_current = state
            .pair
            .as_ref()
            .is_some_and(|p| p.access_token.expose_secret() == refused.expose_secret());
        if still_current {
            self.refresh_locked(oauth, &mut state).await?;
        }
        Ok(())
    }

    /// Spends the refresh token and stores the new pair before anything uses it.
    async fn refresh_locked(&self, oauth: &OAuth, state: &mut TokenState) -> Result<(), CrmError> {
        // Another instance sharing the store may have rotated the pair already; its refresh
        // token is the only live one, so take it rather than spend ours (already dead).
        let stored = oauth.tokens.load().await.map_err(store_error)?;
        if let (Some(stored), Some(held)) = (&stored, &state.pair)
            && !stored.same_refresh(held)
        {
            let fresh = stored.expires_at - REFRESH_MARGIN > self.now();
            state.pair = Some(stored.clone());
            if fresh {
                return Ok(());
            }
        }
        let current = state
            .pair
            .clone()
            .or(stored)
            .ok_or_else(|| CrmError::Auth {
                message: format!("no amoCRM tokens are stored for this business; {AUTH_FIX}"),
            })?;
        let pair = self
            .token_request(oauth, Grant::Refresh(&current.refresh_token))
            .await?;
        // The old refresh token is spent from this instant: persist the new pair first. If the
        // store fails, keep the pair in memory (it is the only live one) and say so.
        let saved = oauth.tokens.save(&pair, self.now()).await;
        state.pair = Some(pair);
        if let Err(e) = saved {
            tracing::error!(error = %e, "amoCRM tokens rotated but could not be stored");
            return Err(store_error(e));
        }
        tracing::info!("amoCRM access token refreshed; new pair stored");
        Ok(())
    }

    async fn token_request(&self, oauth: &OAuth, grant: Grant<'_>) -> Result<TokenPair, CrmError> {
        let (grant_type, code, refresh_token) = match grant {
            Grant::Code(c) => ("authorization_code", Some(c), None),
            Grant::Refresh(r) => ("refresh_token", None, Some(r.expose_secret())),
        };
        let body = TokenRequestOut {
            client_id: &oauth.client_id,
            client_secret: oauth.client_secret.expose_secret(),
            grant_type,
            code,
            refresh_token,
            redirect_uri: &oauth.redirect_uri,
        };
        let url = self.url("/oauth2/access_token")?;
        self.inner.limiter.until_ready().await;
        let response = self
            .inner
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = response.bytes().await.map_err(transport_error)?;
        tracing::debug!(
            status = status.as_u16(),
            grant_type,
            "amoCRM token endpoint"
        );
        if status.is_success() {
            let token: TokenIn = parse_body(&bytes, "token response")?;
            return Ok(TokenPair {
                access_token: SecretString::from(token.access_token),
                refresh_token: SecretString::from(token.refresh_token),
                expires_at: self.now() + chrono::Duration::seconds(token.expires_in),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(CrmError::Transient {
                message: "amoCRM token endpoint unavailable".into(),
                status: Some(status.as_u16()),
                retry_after,
            });
        }
        // Any 4xx here is terminal: a used, expired (3 months unused) or revoked refresh
        // token, a stale code or a wrong secret; only a fresh authorisation helps.
        let problem: ProblemIn = serde_json::from_slice(&bytes).unwrap_or_default();
        let why = problem
            .hint
            .or(problem.detail)
            .or(problem.title)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let what = match grant {
            Grant::Code(_) => "refused the authorisation code",
            Grant::Refresh(_) => {
                "refused the refresh token (it is single-use and expires after 3 months unused)"
            }
        };
        Err(CrmError::Auth {
            message: format!("amoCRM {what}: {why}; {AUTH_FIX}"),
        })
    }

    // ---------------------------------------------------------------- transport

    fn url(&self, path: &str) -> Result<Url, CrmError> {
        self.inner
            .config
            .base_url
            .join(path)
            .map_err(|e| CrmError::permanent(format!("bad amoCRM URL for {path}: {e}")))
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Vec<u8>>, CrmError> {
        self.execute(Method::GET, path, query, None).await
    }

    async fn send_json<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Option<Vec<u8>>, CrmError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| CrmError::permanent(format!("cannot encode the request: {e}")))?;
        self.execute(method, path, &[], Some(bytes)).await
    }

    /// One API call: rate-limited, authorised, refreshed once on 401 (OAuth), and mapped to
    /// `CrmError` by status. `None` is amoCRM's 204 (nothing found).
    async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, CrmError> {
        let url = self.url(path)?;
        let oauth = matches!(self.inner.auth, AuthMode::OAuth(_));
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            self.inner.limiter.until_ready().await;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(
                    ACCEPT,
                    "application/hal+json, application/problem+json, application/json",
                );
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status();
            // The query may hold a phone number: log the path only.
            tracing::debug!(%method, path, status = status.as_u16(), "amoCRM call");
            if status == StatusCode::UNAUTHORIZED && oauth && !refreshed {
                refreshed = true;
                self.refresh_after_401(&token).await?;
                continue;
            }
            let retry_after = retry_after(&response);
            let bytes = response.bytes().await.map_err(transport_error)?;
            return map_status(status, retry_after, &bytes, oauth);
        }
    }

    // ---------------------------------------------------------------- contacts

    async fn find_contact(
        &self,
        phone: &Phone,
        email: Option<&Email>,
    ) -> Result<Option<i64>, CrmError> {
        // The CRM keeps phones as typed ("8 912 …", "+7 (912) …"); search by the national
        // digits, then compare each hit's phones after normalising them ourselves.
        let digits: String = phone
            .as_str()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let tail: String = digits
            .chars()
            .skip(digits.len().saturating_sub(10))
            .collect();
        // An erased client's phone searches nothing: an empty query lists every contact.
        let by_phone = if phone.is_erased() {
            Vec::new()
        } else {
            self.search_contacts(&tail).await?
        };
        for contact in by_phone {
            if contact.phones().any(|p| &p == phone) {
                tracing::debug!(contact_id = contact.id, phone = %phone.masked(), "amoCRM contact found by phone");
                return Ok(Some(contact.id));
            }
        }
        if let Some(email) = email {
            // Searched as it is stored (Unicode), compared in one form whichever way it was typed.
            let wanted = Email::parse_ascii(email.as_str()).ok();
            for contact in self.search_contacts(&email.unicode()).await? {
                if contact
                    .emails()
                    .any(|e| &e == email || Email::parse_ascii(e.as_str()).ok() == wanted)
                {
                    tracing::debug!(contact_id = contact.id, email = %email.masked(), "amoCRM contact found by email");
                    return Ok(Some(contact.id));
                }
            }
        }
        Ok(None)
    }

    async fn search_contacts(&self, query: &str) -> Result<Vec<ContactIn>, CrmError> {
        let page = self
            .get(
                "/api/v4/contacts",
                &[("query", query.to_string()), ("limit", "250".into())],
            )
            .await?;
        let Some(bytes) = page else {
            return Ok(Vec::new());
        };
        let mut contacts = parse_body::<ContactsPage>(&bytes, "contact list")?
            .embedded
            .contacts;
        // Oldest first, so repeated runs pick the same contact among duplicates.
        contacts.sort_by_key(|c| c.id);
        Ok(contacts)
    }

    fn contact_out(req: &ContactRequest) -> ContactOut {
        let mut fields = vec![FieldValueOut::code(
            "PHONE",
            req.phone.as_str().to_string(),
            Some(phone_enum(req.phone.is_mobile())),
        )];
        if let Some(email) = &req.email {
            fields.push(FieldValueOut::code("EMAIL", email.unicode(), Some("WORK")));
        }
        ContactOut {
            name: req.name.clone(),
            custom_fields_values: fields,
        }
    }

    // ---------------------------------------------------------------- bulk contacts (import)

    /// One page (250) of the account's contacts, oldest first; `true` when more follow.
    pub async fn contacts_page(&self, page: u32) -> Result<(Vec<ContactRecord>, bool), CrmError> {
        let bytes = self
            .get(
                "/api/v4/contacts",
                &[
                    ("limit", CONTACT_BATCH.to_string()),
                    ("page", page.to_string()),
                    ("order[id]", "asc".into()),
                ],
            )
            .await?;
        let Some(bytes) = bytes else {
            return Ok((Vec::new(), false));
        };
        let page: ContactsPage = parse_body(&bytes, "contact list")?;
        let more = page.links.is_some_and(|l| l.next.is_some());
        Ok((
            page.embedded
                .contacts
                .iter()
                .map(ContactIn::record)
                .collect(),
            more,
        ))
    }

    /// Contacts whose filled fields match `query` (a phone's digits, an email). An e-mail is
    /// searched in Unicode, the form zapis writes.
    pub async fn search_contact_records(
        &self,
        query: &str,
    ) -> Result<Vec<ContactRecord>, CrmError> {
        Ok(self
            .search_contacts(&unicode_email(query))
            .await?
            .iter()
            .map(ContactIn::record)
            .collect())
    }

    fn draft_out(draft: &ContactDraft) -> BulkContactOut {
        let mut fields = Vec::new();
        if !draft.phones.is_empty() {
            fields.push(FieldValueOut::many(
                "PHONE",
                draft
                    .phones
                    .iter()
                    .map(|p| (p.clone(), phone_enum(is_mobile_phone(p))))
                    .collect(),
            ));
        }
        if !draft.emails.is_empty() {
            fields.push(FieldValueOut::many(
                "EMAIL",
                draft
                    .emails
                    .iter()
                    .map(|e| (unicode_email(e), "WORK"))
                    .collect(),
            ));
        }
        BulkContactOut {
            id: None,
            name: Some(draft.name.clone()).filter(|n| !n.is_empty()),
            custom_fields_values: fields,
            request_id: None,
            embedded: draft.tag.as_ref().map(|t| BulkEmbeddedOut {
                tags: vec![TagOut { name: t.clone() }],
            }),
        }
    }

    /// Adds up to [`CONTACT_BATCH`] contacts in one request; their ids, in the given order.
    pub async fn add_contacts(&self, drafts: &[ContactDraft]) -> Result<Vec<String>, CrmError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let body: Vec<BulkContactOut> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| BulkContactOut {
                request_id: Some(i.to_string()),
                ..Self::draft_out(d)
            })
            .collect();
        let bytes = self
            .send_json(Method::POST, "/api/v4/contacts", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding contacts"))?;
        let added: AddedPage<ContactsAddedEmbedded> = parse_body(&bytes, "contacts response")?;
        let mut ids = vec![None; drafts.len()];
        for (pos, c) in added.embedded.contacts.iter().enumerate() {
            let slot = c
                .request_id
                .as_deref()
                .and_then(|r| r.parse::<usize>().ok())
                .unwrap_or(pos);
            if let Some(s) = ids.get_mut(slot) {
                *s = Some(c.id.to_string());
            }
        }
        ids.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CrmError::transient("amoCRM added fewer contacts than sent"))
    }

    /// Replaces the phones and emails of up to [`CONTACT_BATCH`] contacts (names stay as the
    /// managers left them).
    pub async fn update_contacts(&self, items: &[(String, ContactDraft)]) -> Result<(), CrmError> {
        if items.is_empty() {
            return Ok(());
        }
        let body = items
            .iter()
            .map(|(id, d)| {
                Ok(BulkContactOut {
                    id: Some(lead_id(id)?),
                    name: None,
                    embedded: None,
                    ..Self::draft_out(d)
                })
            })
            .collect::<Result<Vec<_>, CrmError>>()?;
        self.send_json(Method::PATCH, "/api/v4/contacts", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to updating contacts"))?;
        Ok(())
    }

    // ---------------------------------------------------------------- leads

    fn booking_tag(booking_id: &str) -> String {
        // Tags are short labels in the card; 16 characters of a 32-hex id are ample.
        let prefix: String = booking_id.chars().take(16).collect();
        format!("zapis:{prefix}")
    }

    /// The tracking values of a booking that the account has no field for, as
    /// `(utm_source, yandex)` pairs.
    fn untracked(
        booking: &Booking,
        tracking: &HashMap<&'static str, i64>,
    ) -> Vec<(String, String)> {
        let utm = &booking.source.utm;
        TRACKING_CODES
            .iter()
            .zip([
                &utm.source,
                &utm.medium,
                &utm.campaign,
                &utm.content,
                &utm.term,
            ])
            .filter(|((code, _), _)| !tracking.contains_key(code))
            .filter_map(|((_, name), value)| value.as_ref().map(|v| (name.to_string(), v.clone())))
            .collect()
    }

    fn lead_out(
        &self,
        req: &LeadRequest,
        contact: Option<EmbeddedContact>,
        ctx: &LeadContext,
    ) -> LeadOut {
        let cfg = &self.inner.config;
        let booking = &req.booking;
        let source = &booking.source;
        // The booking id tag is for people reading the card; the search uses the field.
        let mut tags: Vec<String> = vec![
            cfg.bot_tag.clone(),
            format!("{}{}", cfg.channel_tag_prefix, source.channel.as_str()),
            Self::booking_tag(&booking.id),
        ];
        if let Some(campaign) = source.link_name.as_ref().or(source.utm.campaign.as_ref()) {
            tags.push(format!("{}{campaign}", cfg.campaign_tag_prefix));
        }
        let mut fields = vec![FieldValueOut::id(ctx.booking_field, booking.id.clone())];
        if let Some(payload) = &source.payload {
            match cfg.start_payload_field_id {
                Some(id) => fields.push(FieldValueOut::id(id, payload.clone())),
                None => tags.push(format!("start:{payload}")),
            }
        }
        let utm = &source.utm;
        for ((code, _), value) in TRACKING_CODES.iter().zip([
            &utm.source,
            &utm.medium,
            &utm.campaign,
            &utm.content,
            &utm.term,
        ]) {
            if let (Some(v), Some(id)) = (value, ctx.tracking.get(code)) {
                fields.push(FieldValueOut::id(*id, v.clone()));
            }
        }
        // A value without a field would fail the whole create; it is kept as a tag (and a
        // note, written with the transcript).
        for (name, value) in Self::untracked(booking, &ctx.tracking) {
            tags.push(format!("{name}:{value}"));
        }
        let mut seen = std::collections::HashSet::new();
        let tags = tags
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && seen.insert(t.clone()))
            .map(|name| TagOut { name })
            .collect();
        LeadOut {
            name: req.title(),
            // amoCRM prices are whole units; round kopecks half up.
            price: (booking.price.kopecks() + 50).div_euclid(100),
            pipeline_id: cfg.pipeline_id,
            status_id: cfg.new_status_id,
            responsible_user_id: cfg.responsible_user_id,
            custom_fields_values: fields,
            embedded: LeadEmbeddedOut {
                tags,
                contacts: contact.into_iter().collect(),
            },
            request_id: booking.id.clone(),
        }
    }

    fn lead_matches_booking(lead: &LeadIn, field: i64, booking_id: &str) -> bool {
        lead.custom_fields_values
            .iter()
            .flatten()
            .filter(|f| f.field_id == Some(field))
            .flat_map(|f| f.values.iter())
            .any(|v| v.value.as_str() == Some(booking_id))
    }

    // ---------------------------------------------------------------- account fields

    /// The account's custom fields of leads (`GET /api/v4/leads/custom_fields`, 50 to a page,
    /// `_links.next` while more remain), read once and kept; `reload` reads them again.
    pub async fn lead_fields(&self, reload: bool) -> Result<Arc<Vec<LeadField>>, CrmError> {
        let mut account = self.inner.account.lock().await;
        self.lead_fields_locked(&mut account, reload).await
    }

    async fn lead_fields_locked(
        &self,
        account: &mut AccountFields,
        reload: bool,
    ) -> Result<Arc<Vec<LeadField>>, CrmError> {
        if !reload && let Some(fields) = &account.lead_fields {
            return Ok(fields.clone());
        }
        let mut fields = Vec::new();
        let mut page = 1u32;
        loop {
            let bytes = self
                .get(
                    "/api/v4/leads/custom_fields",
                    &[("limit", "50".into()), ("page", page.to_string())],
                )
                .await?;
            let Some(bytes) = bytes else { break };
            let list: FieldsPage = parse_body(&bytes, "lead field list")?;
            fields.extend(list.embedded.custom_fields.into_iter().map(|f| LeadField {
                id: f.id,
                name: f.name.unwrap_or_default(),
                code: f.code.filter(|c| !c.is_empty()),
                field_type: f.field_type.unwrap_or_default(),
            }));
            if list.links.is_none_or(|l| l.next.is_none()) {
                break;
            }
            page += 1;
            if page > MAX_FIELD_PAGES {
                return Err(CrmError::permanent(format!(
                    "amoCRM lists more than {MAX_FIELD_PAGES} pages of lead fields; refusing to read on"
                )));
            }
        }
        let fields = Arc::new(fields);
        account.lead_fields = Some(fields.clone());
        Ok(fields)
    }

    /// The booking id field: the configured one; else the one kept in our store, if the
    /// account still has it; else the text field named [`BOOKING_FIELD_NAME`]; else a new one
    /// (`POST /api/v4/leads/custom_fields`). Found or created, its id goes into the store.
    pub async fn booking_field(&self) -> Result<(i64, FieldOrigin), CrmError> {
        let mut account = self.inner.account.lock().await;
        self.booking_field_locked(&mut account).await
    }

    async fn booking_field_locked(
        &self,
        account: &mut AccountFields,
    ) -> Result<(i64, FieldOrigin), CrmError> {
        if let Some(id) = self.inner.config.booking_id_field_id {
            return Ok((id, FieldOrigin::Configured));
        }
        if let Some(known) = account.booking_field {
            return Ok(known);
        }
        let fields = self.lead_fields_locked(account, false).await?;
        let (entity, key) = BOOKING_FIELD_LINK;
        let stored = self
            .inner
            .store
            .external_id(&self.inner.business_id, entity, key, SYSTEM)
            .await
            .map_err(store_error)?
            .and_then(|id| id.parse::<i64>().ok());
        let resolved = match stored {
            Some(id) if fields.iter().any(|f| f.id == id) => (id, FieldOrigin::Stored),
            _ => {
                let named = |fields: &[LeadField]| {
                    fields
                        .iter()
                        .filter(|f| f.name.trim().eq_ignore_ascii_case(BOOKING_FIELD_NAME))
                        .min_by_key(|f| f.id)
                        .cloned()
                };
                // Never create from a list read earlier: an attempt whose answer was lost may
                // have created the field since.
                let found = match named(&fields) {
                    Some(f) => Some(f),
                    None => named(&self.lead_fields_locked(account, true).await?),
                };
                let (field, origin) = match found {
                    Some(f) => (f, FieldOrigin::Found),
                    None => {
                        self.create_text_field(BOOKING_FIELD_NAME).await?;
                        // Read back rather than trust the answer: two instances creating at
                        // once both settle on the oldest field of that name.
                        let fields = self.lead_fields_locked(account, true).await?;
                        let field = named(&fields).ok_or_else(|| {
                            CrmError::transient(format!(
                                "amoCRM lists no lead field «{BOOKING_FIELD_NAME}» after creating it"
                            ))
                        })?;
                        (field, FieldOrigin::Created)
                    }
                };
                if field.field_type != "text" {
                    return Err(CrmError::permanent(format!(
                        "the lead field «{}» ({}) is of type {:?}, not text; rename it or set crm.amocrm.booking_id_field_id",
                        field.name, field.id, field.field_type
                    )));
                }
                self.inner
                    .store
                    .put_link(
                        &self.inner.business_id,
                        entity,
                        key,
                        SYSTEM,
                        &field.id.to_string(),
                        self.now(),
                    )
                    .await
                    .map_err(store_error)?;
                tracing::info!(field_id = field.id, %origin, "amoCRM booking id field settled");
                (field.id, origin)
            }
        };
        account.booking_field = Some(resolved);
        Ok(resolved)
    }

    async fn create_text_field(&self, name: &str) -> Result<i64, CrmError> {
        let body = [FieldOut {
            field_type: "text",
            name,
            request_id: "0",
        }];
        let bytes = self
            .send_json(Method::POST, "/api/v4/leads/custom_fields", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a field"))?;
        let added: FieldsPage = parse_body(&bytes, "field add response")?;
        let id = added
            .embedded
            .custom_fields
            .first()
            .map(|f| f.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no field"))?;
        tracing::info!(field_id = id, name, "amoCRM lead field created");
        Ok(id)
    }

    async fn lead_context(&self) -> Result<LeadContext, CrmError> {
        let mut account = self.inner.account.lock().await;
        let (booking_field, _) = self.booking_field_locked(&mut account).await?;
        let fields = self.lead_fields_locked(&mut account, false).await?;
        let tracking = TRACKING_CODES
            .iter()
            .filter_map(|(code, _)| {
                fields
                    .iter()
                    .find(|f| f.code.as_deref() == Some(*code))
                    .map(|f| (*code, f.id))
            })
            .collect();
        Ok(LeadContext {
            booking_field,
            tracking,
        })
    }

    /// Forgets what was read about the account's fields, after amoCRM refused one of them.
    async fn forget_fields(&self) {
        let mut account = self.inner.account.lock().await;
        *account = AccountFields::default();
    }

    /// Settles the booking id field and reports the tracking fields: `zapis amocrm setup`,
    /// `zapis check`, and the start of `zapis run`.
    pub async fn setup(&self) -> Result<SetupReport, CrmError> {
        let (booking_field_id, booking_field_origin) = self.booking_field().await?;
        let ctx = self.lead_context().await?;
        let (present, missing): (Vec<&str>, Vec<&str>) = TRACKING_CODES
            .iter()
            .map(|(code, _)| *code)
            .partition(|code| ctx.tracking.contains_key(code));
        Ok(SetupReport {
            booking_field_id,
            booking_field_origin,
            tracking_present: present.into_iter().map(str::to_string).collect(),
            tracking_missing: missing.into_iter().map(str::to_string).collect(),
        })
    }

    /// The note about tracking values without a field, if the booking has any.
    async fn untracked_note(&self, booking: &Booking) -> Result<Option<String>, CrmError> {
        let ctx = self.lead_context().await?;
        let lines = Self::untracked(booking, &ctx.tracking);
        if lines.is_empty() {
            return Ok(None);
        }
        let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Some(format!(
            "{UNTRACKED_NOTE_HEADER}:\n{}",
            body.join("\n")
        )))
    }

    /// `POST /api/v4/leads` of one lead; its new id.
    async fn post_plain_lead(&self, lead: LeadOut) -> Result<i64, CrmError> {
        let bytes = self
            .send_json(Method::POST, "/api/v4/leads", &[lead])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a lead"))?;
        let added: AddedPage<LeadsAddedEmbedded> = parse_body(&bytes, "leads response")?;
        added
            .embedded
            .leads
            .first()
            .map(|l| l.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no lead"))
    }

    /// Posts one lead (with a contact link, or with a new contact via `/leads/complex`, or
    /// without a contact when the request says so).
    async fn post_lead(
        &self,
        req: &LeadRequest,
        contact: Option<i64>,
        ctx: &LeadContext,
    ) -> Result<(i64, Option<ContactRef>), CrmError> {
        let booking = &req.booking;
        match contact {
            None if req.without_contact => {
                let id = self.post_plain_lead(self.lead_out(req, None, ctx)).await?;
                Ok((id, None))
            }
            Some(contact_id) => {
                let lead = self.lead_out(
                    req,
                    Some(EmbeddedContact::Link {
                        id: contact_id,
                        is_main: true,
                    }),
                    ctx,
                );
                let id = self.post_plain_lead(lead).await?;
                Ok((
                    id,
                    Some(ContactRef {
                        id: contact_id.to_string(),
                        created: false,
                    }),
                ))
            }
            None => {
                // Lead and new contact in one call: no window where a contact exists without
                // its lead.
                let contact = Self::contact_out(&ContactRequest::for_booking(booking));
                let lead = self.lead_out(req, Some(EmbeddedContact::New(contact)), ctx);
                let bytes = self
                    .send_json(Method::POST, "/api/v4/leads/complex", &[lead])
                    .await?
                    .ok_or_else(|| CrmError::transient("amoCRM answered 204 to a complex add"))?;
                let added: Vec<ComplexIn> = parse_body(&bytes, "complex response")?;
                let first = added
                    .first()
                    .ok_or_else(|| CrmError::transient("amoCRM added no lead"))?;
                let contact = first.contact_id.map(|c| ContactRef {
                    id: c.to_string(),
                    created: !first.merged.unwrap_or(false),
                });
                Ok((first.id, contact))
            }
        }
    }

    /// First lines of the lead's common notes: how a retry tells which of its notes landed.
    async fn note_heads(&self, lead_id: i64) -> Result<Vec<String>, CrmError> {
        let bytes = self
            .get(
                &format!("/api/v4/leads/{lead_id}/notes"),
                &[
                    ("filter[note_type]", "common".into()),
                    ("limit", "250".into()),
                ],
            )
            .await?;
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        let page: NotesPage = parse_body(&bytes, "notes list")?;
        Ok(page
            .embedded
            .notes
            .iter()
            .filter_map(|n| n.params.as_ref().and_then(|p| p.text.as_deref()))
            .filter_map(|t| t.lines().next().map(str::to_string))
            .collect())
    }

    async fn post_notes(&self, lead_id: i64, texts: &[String]) -> Result<Vec<String>, CrmError> {
        let mut ids = Vec::new();
        for batch in texts.chunks(BATCH) {
            let body: Vec<NoteOut> = batch
                .iter()
                .map(|text| NoteOut {
                    entity_id: lead_id,
                    note_type: "common",
                    params: NoteParamsOut { text: text.clone() },
                })
                .collect();
            let bytes = self
                .send_json(Method::POST, "/api/v4/leads/notes", &body)
                .await?
                .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding notes"))?;
            let added: AddedPage<NotesEmbedded> = parse_body(&bytes, "notes response")?;
            ids.extend(added.embedded.notes.iter().map(|n| n.id.to_string()));
        }
        Ok(ids)
    }

    // ---------------------------------------------------------------- admin

    /// Validates the token (`GET /api/v4/account`) and that the pipeline and the configured
    /// stages exist (`GET /api/v4/leads/pipelines/{id}`).
    pub async fn check(&self) -> Result<CheckReport, CrmError> {
        let cfg = &self.inner.config;
        let account: AccountIn = match self.get("/api/v4/account", &[]).await? {
            Some(bytes) => parse_body(&bytes, "account")?,
            None => return Err(CrmError::permanent("amoCRM returned no account")),
        };
        let path = format!("/api/v4/leads/pipelines/{}", cfg.pipeline_id);
        let pipeline: PipelineIn = match self.get(&path, &[]).await? {
            Some(bytes) => parse_body(&bytes, "pipeline")?,
            None => {
                return Err(CrmError::permanent(format!(
                    "pipeline {} does not exist in amoCRM (crm.amocrm.pipeline_id)",
                    cfg.pipeline_id
                )));
            }
        };
        let stages: Vec<(i64, String)> = pipeline
            .embedded
            .map(|e| e.statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id, s.name.unwrap_or_default()))
            .collect();
        let wanted = [
            ("new_status_id", cfg.new_status_id),
            ("cancelled_status_id", Some(cfg.cancelled_status_id)),
            ("done_status_id", Some(cfg.done_status_id)),
        ];
        for (key, id) in wanted {
            if let Some(id) = id
                && !stages.iter().any(|(s, _)| *s == id)
            {
                return Err(CrmError::permanent(format!(
                    "stage {id} (crm.amocrm.{key}) is not in pipeline {}",
                    cfg.pipeline_id
                )));
            }
        }
        Ok(CheckReport {
            account_id: account.id,
            account_name: account.name.unwrap_or_default(),
            pipeline_id: pipeline.id,
            pipeline_name: pipeline.name.unwrap_or_default(),
            stages,
        })
    }

    /// Subscribes `destination` to amoCRM events (`status_lead`, `add_lead`, …). amoCRM
    /// updates the settings when the destination is already subscribed.
    pub async fn register_webhook(
        &self,
        destination: &Url,
        settings: &[&str],
    ) -> Result<Webhook, CrmError> {
        let body = WebhookOut {
            destination: destination.as_str(),
            settings,
            sort: None,
        };
        let bytes = self
            .send_json(Method::POST, "/api/v4/webhooks", &body)
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to a webhook subscription"))?;
        let hook: WebhookIn = parse_body(&bytes, "webhook")?;
        Ok(Webhook {
            id: hook.id,
            destination: hook.destination,
            settings: hook.settings,
            disabled: hook.disabled.unwrap_or(false),
        })
    }
}

/// `zapis amocrm auth --code CODE`: exchanges the code and stores the first token pair for
/// `business_id`. The CLI only has to load the config and the store and call this.
pub async fn authorize(
    config: AmoCrmConfig,
    store: Store,
    business_id: &str,
    code: &str,
) -> Result<(), CrmError> {
    let client = AmoCrm::new(
        config,
        store,
        business_id,
        Arc::new(crate::clock::SystemClock),
    )?;
    client.exchange_code(code).await
}

#[derive(Clone, Copy)]
enum Grant<'a> {
    Code(&'a str),
    Refresh(&'a SecretString),
}

/// amoCRM's 400 naming a custom field (`custom_fields_values.N.field_id`).
fn refuses_a_field(e: &CrmError) -> bool {
    e.status() == Some(400)
        && e.details()
            .iter()
            .any(|d| d.path.contains("custom_fields_values"))
}

/// PHONE enum codes: a mobile line is `MOB`, a landline `WORK`.
fn phone_enum(mobile: bool) -> &'static str {
    if mobile { "MOB" } else { "WORK" }
}

fn lead_id(id: &str) -> Result<i64, CrmError> {
    id.parse()
        .map_err(|_| CrmError::permanent(format!("{id:?} is not an amoCRM id")))
}

#[async_trait]
impl Crm for AmoCrm {
    fn system(&self) -> &'static str {
        SYSTEM
    }

    /// `GET /api/v4/leads/pipelines` (every pipeline with its statuses under `_embedded`;
    /// amoCRM allows at most 50, on one page) and the lead fields.
    async fn catalog(&self) -> Result<crate::crm::CrmCatalog, CrmError> {
        let list: PipelinesIn = match self.get("/api/v4/leads/pipelines", &[]).await? {
            Some(bytes) => parse_body(&bytes, "pipeline list")?,
            None => PipelinesIn::default(),
        };
        let pipelines = list
            .embedded
            .map(|e| e.pipelines)
            .unwrap_or_default()
            .into_iter()
            .map(|p| crate::crm::CatalogPipeline {
                id: p.id.to_string(),
                name: p.name.unwrap_or_default(),
                stages: p
                    .embedded
                    .map(|e| e.statuses)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| (s.id.to_string(), s.name.unwrap_or_default()))
                    .collect(),
            })
            .collect();
        let fields = self
            .lead_fields(true)
            .await?
            .iter()
            .map(|f| crate::crm::CatalogField {
                id: f.id.to_string(),
                name: f.name.clone(),
                code: f.code.clone(),
                kind: f.field_type.clone(),
            })
            .collect();
        Ok(crate::crm::CrmCatalog {
            pipelines,
            fields,
            sources: Vec::new(),
        })
    }

    async fn find_or_create_contact(&self, req: &ContactRequest) -> Result<ContactRef, CrmError> {
        if let Some(id) = self.find_contact(&req.phone, req.email.as_ref()).await? {
            return Ok(ContactRef {
                id: id.to_string(),
                created: false,
            });
        }
        let bytes = self
            .send_json(Method::POST, "/api/v4/contacts", &[Self::contact_out(req)])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a contact"))?;
        let added: AddedPage<ContactsAddedEmbedded> = parse_body(&bytes, "contacts response")?;
        let id = added
            .embedded
            .contacts
            .first()
            .map(|c| c.id)
            .ok_or_else(|| CrmError::transient("amoCRM added no contact"))?;
        tracing::info!(contact_id = id, phone = %req.phone.masked(), "amoCRM contact created");
        Ok(ContactRef {
            id: id.to_string(),
            created: true,
        })
    }

    async fn create_lead(&self, req: &LeadRequest) -> Result<CreatedLead, CrmError> {
        let booking = &req.booking;
        let existing = match &req.contact_id {
            Some(id) => Some(lead_id(id)?),
            None if req.without_contact => None,
            None => {
                self.find_contact(&booking.client_phone, booking.client_email.as_ref())
                    .await?
            }
        };
        let ctx = self.lead_context().await?;
        let (id, contact) = match self.post_lead(req, existing, &ctx).await {
            // A field deleted or renamed since the fields were read: read them again and
            // send once more, so an account's change never kills the booking.
            Err(e) if refuses_a_field(&e) => {
                tracing::warn!(error = %e, "amoCRM refused a lead field; re-reading the account's fields");
                self.forget_fields().await;
                let ctx = self.lead_context().await?;
                self.post_lead(req, existing, &ctx).await?
            }
            other => other?,
        };
        tracing::info!(lead_id = id, booking_id = %booking.id, "amoCRM lead created");
        let note_ids = if req.transcript.is_empty() {
            Vec::new()
        } else {
            self.add_notes(&id.to_string(), &req.transcript).await?
        };
        Ok(CreatedLead {
            lead_id: id.to_string(),
            contact,
            note_ids,
        })
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        self.setup().await.map(|_| ())
    }

    async fn find_lead_by_booking(&self, booking_id: &str) -> Result<Option<CrmLead>, CrmError> {
        // `query` searches filled field values, never tags: the booking id lives in a field.
        let (field, _) = self.booking_field().await?;
        let bytes = self
            .get(
                "/api/v4/leads",
                &[("query", booking_id.to_string()), ("limit", "250".into())],
            )
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let page: LeadsPage = parse_body(&bytes, "lead list")?;
        let mut found: Vec<&LeadIn> = page
            .embedded
            .leads
            .iter()
            .filter(|l| Self::lead_matches_booking(l, field, booking_id))
            .collect();
        found.sort_by_key(|l| l.id);
        Ok(found.first().map(|l| l.to_domain()))
    }

    async fn ensure_booking_notes(
        &self,
        lead_id_str: &str,
        booking: &Booking,
        transcript: &[TranscriptLine],
        fresh: bool,
    ) -> Result<Vec<String>, CrmError> {
        let id = lead_id(lead_id_str)?;
        let mut texts: Vec<String> = self.untracked_note(booking).await?.into_iter().collect();
        texts.extend(transcript_notes(
            transcript,
            self.inner.config.note_max_chars,
        ));
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if !fresh {
            let heads = self.note_heads(id).await?;
            texts.retain(|t| {
                let head = t.lines().next().unwrap_or_default();
                !heads.iter().any(|h| h == head)
            });
        }
        // One request for up to 50 notes: they land together or not at all.
        self.post_notes(id, &texts).await
    }

    async fn add_notes(
        &self,
        lead_id_str: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        let id = lead_id(lead_id_str)?;
        let texts = transcript_notes(transcript, self.inner.config.note_max_chars);
        self.post_notes(id, &texts).await
    }

    async fn ensure_transcript(
        &self,
        lead_id_str: &str,
        transcript: &[TranscriptLine],
    ) -> Result<Vec<String>, CrmError> {
        if transcript.is_empty() {
            return Ok(Vec::new());
        }
        let heads = self.note_heads(lead_id(lead_id_str)?).await?;
        if heads.iter().any(|h| h.starts_with(TRANSCRIPT_HEADER)) {
            return Ok(Vec::new());
        }
        self.add_notes(lead_id_str, transcript).await
    }

    async fn ensure_note(&self, lead_id_str: &str, text: &str) -> Result<Option<String>, CrmError> {
        let head = text.lines().next().unwrap_or_default();
        let heads = self.note_heads(lead_id(lead_id_str)?).await?;
        if heads.iter().any(|h| h == head) {
            return Ok(None);
        }
        self.add_note(lead_id_str, text).await.map(Some)
    }

    async fn add_note(&self, lead_id_str: &str, text: &str) -> Result<String, CrmError> {
        let id = lead_id(lead_id_str)?;
        let max = self.inner.config.note_max_chars;
        let text: String = text.chars().take(max).collect();
        let ids = self.post_notes(id, &[text]).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| CrmError::transient("amoCRM added no note"))
    }

    async fn create_task(&self, req: &TaskRequest) -> Result<String, CrmError> {
        let cfg = &self.inner.config;
        let lead_time = chrono::Duration::from_std(cfg.task_lead_time.0)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        // A booking made at the last minute still gets a task, due now rather than in the past.
        let due = (req.visit_at - lead_time).max(self.now());
        let task = TaskOut {
            text: req.text.clone(),
            complete_till: due.timestamp(),
            entity_id: lead_id(&req.lead_id)?,
            entity_type: "leads",
            task_type_id: cfg.task_type_id,
            responsible_user_id: cfg.responsible_user_id,
        };
        let bytes = self
            .send_json(Method::POST, "/api/v4/tasks", &[task])
            .await?
            .ok_or_else(|| CrmError::transient("amoCRM answered 204 to adding a task"))?;
        let added: AddedPage<TasksEmbedded> = parse_body(&bytes, "tasks response")?;
        added
            .embedded
            .tasks
            .first()
            .map(|t| t.id.to_string())
            .ok_or_else(|| CrmError::transient("amoCRM added no task"))
    }

    async fn find_task(&self, req: &TaskRequest) -> Result<Option<String>, CrmError> {
        let id = lead_id(&req.lead_id)?;
        let query = [
            ("filter[entity_type]", "leads".to_string()),
            ("filter[entity_id][]", id.to_string()),
            ("limit", "250".to_string()),
        ];
        let Some(bytes) = self.get("/api/v4/tasks", &query).await? else {
            return Ok(None);
        };
        let page: TasksPage = parse_body(&bytes, "task list")?;
        Ok(page
            .embedded
            .tasks
            .iter()
            .filter(|t| t.entity_id == Some(id) && t.text == req.text)
            .map(|t| t.id)
            .min()
            .map(|id| id.to_string()))
    }

    async fn move_lead(
        &self,
        lead_id_str: &str,
        stage: &Stage,
        note: Option<&str>,
    ) -> Result<(), CrmError> {
        let cfg = &self.inner.config;
        let id = lead_id(lead_id_str)?;
        let (pipeline_id, status_id) = match stage {
            Stage::New => (
                cfg.pipeline_id,
                cfg.new_status_id.ok_or_else(|| {
                    CrmError::permanent("crm.amocrm.new_status_id is not configured")
                })?,
            ),
            Stage::Cancelled => (cfg.pipeline_id, cfg.cancelled_status_id),
            Stage::Done => (cfg.pipeline_id, cfg.done_status_id),
            Stage::Custom {
                pipeline_id,
                status_id,
            } => (pipeline_id.unwrap_or(cfg.pipeline_id), *status_id),
        };
        // amoCRM takes a loss reason only with the "lost" stage (as its SDK sends it).
        let loss_reason_id = if status_id == AMO_LOST_STATUS_ID {
            cfg.loss_reason_id
        } else {
            None
        };
        let body = LeadPatchOut {
            pipeline_id,
            status_id,
            loss_reason_id,
        };
        self.send_json(Method::PATCH, &format!("/api/v4/leads/{id}"), &body)
            .await?;
        tracing::info!(lead_id = id, status_id, "amoCRM lead moved");
        if let Some(note) = note {
            self.add_note(lead_id_str, note).await?;
        }
        Ok(())
    }

    async fn get_lead(&self, lead_id_str: &str) -> Result<Option<CrmLead>, CrmError> {
        let id = lead_id(lead_id_str)?;
        match self.get(&format!("/api/v4/leads/{id}"), &[]).await? {
            Some(bytes) => Ok(Some(parse_body::<LeadIn>(&bytes, "lead")?.to_domain())),
            None => Ok(None),
        }
    }

    async fn cancelled_among(&self, lead_ids: &[String]) -> Result<Vec<String>, CrmError> {
        let cancelled = self.inner.config.cancelled_status_id;
        let mut found = Vec::new();
        // `filter[id][]` takes a list; a page holds at most 250 leads.
        for chunk in lead_ids.chunks(250) {
            let mut query: Vec<(&str, String)> = Vec::with_capacity(chunk.len() + 1);
            for id in chunk {
                query.push(("filter[id][]", lead_id(id)?.to_string()));
            }
            query.push(("limit", "250".into()));
            let Some(bytes) = self.get("/api/v4/leads", &query).await? else {
                continue;
            };
            let page: LeadsPage = parse_body(&bytes, "lead list")?;
            found.extend(
                page.embedded
                    .leads
                    .iter()
                    .filter(|l| l.status_id == cancelled)
                    .map(|l| l.id.to_string()),
            );
        }
        Ok(found)
    }
}

// -------------------------------------------------------------------- status mapping

fn transport_error(e: reqwest::Error) -> CrmError {
    // The URL may carry a phone in the query: keep it out of the message.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    CrmError::transient(format!("amoCRM {kind}: {}", e.without_url()))
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    crate::connectors::failure::retry_after(response.headers())
}

fn map_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
    oauth: bool,
) -> Result<Option<Vec<u8>>, CrmError> {
    let code = status.as_u16();
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    if status.is_success() {
        return Ok(Some(bytes.to_vec()));
    }
    // 429 bodies may not be JSON (the official SDK says so): parse leniently everywhere.
    let problem: ProblemIn = serde_json::from_slice(bytes).unwrap_or_default();
    let message = problem
        .detail
        .clone()
        .or_else(|| problem.title.clone())
        .or_else(|| problem.hint.clone())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string()
        });
    Err(match code {
        401 => CrmError::Auth {
            message: if oauth {
                format!(
                    "amoCRM refused the access token even after a refresh ({message}); {AUTH_FIX}"
                )
            } else {
                format!(
                    "amoCRM refused the long-lived token ({message}); issue a new one in the integration's \"Keys and scopes\" tab and set crm.amocrm.token"
                )
            },
        },
        402 => CrmError::PaymentRequired {
            message,
            status: code,
        },
        403 => CrmError::Transient {
            message: format!(
                "amoCRM refused access ({message}): the account or IP may be blocked for exceeding the rate limit, or the user lacks rights"
            ),
            status: Some(code),
            retry_after: Some(BLOCKED_RETRY),
        },
        429 => CrmError::Transient {
            message: "amoCRM rate limit exceeded".into(),
            status: Some(code),
            retry_after: retry_after.or(Some(Duration::from_secs(1))),
        },
        408 | 500..=599 => CrmError::Transient {
            message,
            status: Some(code),
            retry_after,
        },
        _ => CrmError::Permanent {
            message,
            status: Some(code),
            details: problem
                .validation_errors
                .into_iter()
                .flat_map(|item| {
                    let request_id = item.request_id;
                    item.errors.into_iter().map(move |e| FieldError {
                        request_id: request_id.clone(),
                        code: e.code.unwrap_or_default(),
                        path: e.path.unwrap_or_default(),
                        detail: e.detail.unwrap_or_default(),
                    })
                })
                .collect(),
        },
    })
}

fn parse_body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CrmError> {
    // A 2xx we cannot read leaves the outcome unknown; retrying is safe because every create
    // is preceded by a search.
    serde_json::from_slice(bytes)
        .map_err(|e| CrmError::transient(format!("unexpected amoCRM {what}: {e}")))
}

// -------------------------------------------------------------------- wire types (out)

#[derive(Serialize)]
struct TokenRequestOut<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    grant_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    redirect_uri: &'a str,
}

#[derive(Serialize)]
struct FieldValueOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    field_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_code: Option<&'static str>,
    values: Vec<ValueOut>,
}

#[derive(Serialize)]
struct ValueOut {
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enum_code: Option<&'static str>,
}

impl FieldValueOut {
    fn id(field_id: i64, value: String) -> FieldValueOut {
        FieldValueOut {
            field_id: Some(field_id),
            field_code: None,
            values: vec![ValueOut {
                value,
                enum_code: None,
            }],
        }
    }
    fn many(code: &'static str, values: Vec<(String, &'static str)>) -> FieldValueOut {
        FieldValueOut {
            field_id: None,
            field_code: Some(code),
            values: values
                .into_iter()
                .map(|(value, enum_code)| ValueOut {
                    value,
                    enum_code: Some(enum_code),
                })
                .collect(),
        }
    }
    fn code(code: &'static str, value: String, enum_code: Option<&'static str>) -> FieldValueOut {
        FieldValueOut {
            field_id: None,
            field_code: Some(code),
            values: vec![ValueOut { value, enum_code }],
        }
    }
}

#[derive(Serialize)]
struct ContactOut {
    name: String,
    custom_fields_values: Vec<FieldValueOut>,
}

/// A contact in a bulk add (with `request_id`) or a bulk update (with `id`).
#[derive(Serialize)]
struct BulkContactOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    custom_fields_values: Vec<FieldValueOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    embedded: Option<BulkEmbeddedOut>,
}

#[derive(Serialize)]
struct BulkEmbeddedOut {
    tags: Vec<TagOut>,
}

#[derive(Serialize)]
struct TagOut {
    name: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddedContact {
    Link { id: i64, is_main: bool },
    New(ContactOut),
}

#[derive(Serialize)]
struct LeadEmbeddedOut {
    tags: Vec<TagOut>,
    contacts: Vec<EmbeddedContact>,
}

#[derive(Serialize)]
struct LeadOut {
    name: String,
    price: i64,
    pipeline_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields_values: Vec<FieldValueOut>,
    #[serde(rename = "_embedded")]
    embedded: LeadEmbeddedOut,
    /// Echoed back, never stored by amoCRM: only helps reading a batch answer.
    request_id: String,
}

#[derive(Serialize)]
struct LeadPatchOut {
    pipeline_id: i64,
    status_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_reason_id: Option<i64>,
}

#[derive(Serialize)]
struct NoteOut {
    entity_id: i64,
    note_type: &'static str,
    params: NoteParamsOut,
}

#[derive(Serialize)]
struct NoteParamsOut {
    text: String,
}

#[derive(Serialize)]
struct TaskOut {
    text: String,
    complete_till: i64,
    entity_id: i64,
    entity_type: &'static str,
    task_type_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_user_id: Option<i64>,
}

#[derive(Serialize)]
struct FieldOut<'a> {
    #[serde(rename = "type")]
    field_type: &'static str,
    name: &'a str,
    request_id: &'static str,
}

#[derive(Serialize)]
struct WebhookOut<'a> {
    destination: &'a str,
    settings: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    sort: Option<i64>,
}

// -------------------------------------------------------------------- wire types (in)

#[derive(Deserialize)]
struct TokenIn {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

#[derive(Deserialize, Default)]
struct ProblemIn {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    hint: Option<String>,
    #[serde(default, rename = "validation-errors")]
    validation_errors: Vec<ValidationItemIn>,
}

#[derive(Deserialize)]
struct ValidationItemIn {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    errors: Vec<ValidationErrorIn>,
}

#[derive(Deserialize)]
struct ValidationErrorIn {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct CustomFieldIn {
    #[serde(default)]
    field_id: Option<i64>,
    #[serde(default)]
    field_code: Option<String>,
    #[serde(default)]
    values: Vec<ValueIn>,
}

#[derive(Deserialize)]
struct ValueIn {
    /// Text for most fields, but numbers and booleans occur.
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct ContactsPage {
    #[serde(rename = "_embedded")]
    embedded: ContactsEmbedded,
    #[serde(rename = "_links", default)]
    links: Option<PageLinks>,
}

#[derive(Deserialize)]
struct PageLinks {
    #[serde(default)]
    next: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ContactsEmbedded {
    #[serde(default)]
    contacts: Vec<ContactIn>,
}

#[derive(Deserialize)]
struct ContactIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    custom_fields_values: Option<Vec<CustomFieldIn>>,
    #[serde(rename = "_embedded", default)]
    embedded: Option<ContactEmbeddedIn>,
}

#[derive(Deserialize)]
struct ContactEmbeddedIn {
    #[serde(default)]
    tags: Vec<TagIn>,
}

impl ContactIn {
    fn record(&self) -> ContactRecord {
        ContactRecord {
            id: self.id.to_string(),
            name: self.name.clone().unwrap_or_default(),
            phones: self.values_of("PHONE").map(str::to_string).collect(),
            emails: self.values_of("EMAIL").map(str::to_string).collect(),
            tags: self
                .embedded
                .iter()
                .flat_map(|e| e.tags.iter().filter_map(|t| t.name.clone()))
                .collect(),
        }
    }
    fn values_of<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.custom_fields_values
            .iter()
            .flatten()
            .filter(move |f| f.field_code.as_deref() == Some(code))
            .flat_map(|f| f.values.iter())
            .filter_map(|v| v.value.as_str())
    }
    fn phones(&self) -> impl Iterator<Item = Phone> + '_ {
        self.values_of("PHONE").filter_map(|v| Phone::parse(v).ok())
    }
    fn emails(&self) -> impl Iterator<Item = Email> + '_ {
        self.values_of("EMAIL").filter_map(|v| Email::parse(v).ok())
    }
}

#[derive(Deserialize)]
struct AddedPage<E> {
    #[serde(rename = "_embedded")]
    embedded: E,
}

#[derive(Deserialize)]
struct AddedIn {
    id: i64,
    /// Echoed back as sent; amoCRM sends it as a string.
    #[serde(default, deserialize_with = "request_id_text")]
    request_id: Option<String>,
}

fn request_id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[derive(Deserialize)]
struct ContactsAddedEmbedded {
    contacts: Vec<AddedIn>,
}

#[derive(Deserialize)]
struct LeadsAddedEmbedded {
    leads: Vec<AddedIn>,
}

#[derive(Deserialize)]
struct NotesEmbedded {
    notes: Vec<AddedIn>,
}

#[derive(Deserialize)]
struct TasksEmbedded {
    tasks: Vec<AddedIn>,
}

#[derive(Deserialize)]
struct TasksPage {
    #[serde(rename = "_embedded")]
    embedded: TaskListEmbedded,
}

#[derive(Deserialize)]
struct TaskListEmbedded {
    #[serde(default)]
    tasks: Vec<TaskIn>,
}

#[derive(Deserialize)]
struct TaskIn {
    id: i64,
    #[serde(default)]
    entity_id: Option<i64>,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct ComplexIn {
    id: i64,
    #[serde(default)]
    contact_id: Option<i64>,
    #[serde(default)]
    merged: Option<bool>,
}

#[derive(Deserialize)]
struct LeadsPage {
    #[serde(rename = "_embedded")]
    embedded: LeadsEmbedded,
}

#[derive(Deserialize)]
struct LeadsEmbedded {
    #[serde(default)]
    leads: Vec<LeadIn>,
}

#[derive(Deserialize)]
struct LeadIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    price: Option<i64>,
    status_id: i64,
    pipeline_id: i64,
    #[serde(default)]
    custom_fields_values: Option<Vec<CustomFieldIn>>,
}

#[derive(Deserialize)]
struct TagIn {
    #[serde(default)]
    name: Option<String>,
}

impl LeadIn {
    fn to_domain(&self) -> CrmLead {
        CrmLead {
            id: self.id.to_string(),
            status_id: self.status_id,
            pipeline_id: self.pipeline_id,
            price: self.price,
            name: self.name.clone(),
        }
    }
}

#[derive(Deserialize)]
struct NotesPage {
    #[serde(rename = "_embedded")]
    embedded: NotesListEmbedded,
}

#[derive(Deserialize)]
struct NotesListEmbedded {
    #[serde(default)]
    notes: Vec<NoteIn>,
}

#[derive(Deserialize)]
struct NoteIn {
    #[serde(default)]
    params: Option<NoteParamsIn>,
}

#[derive(Deserialize)]
struct NoteParamsIn {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct FieldsPage {
    #[serde(rename = "_embedded")]
    embedded: FieldsEmbedded,
    #[serde(rename = "_links", default)]
    links: Option<PageLinks>,
}

#[derive(Deserialize)]
struct FieldsEmbedded {
    #[serde(default)]
    custom_fields: Vec<FieldIn>,
}

#[derive(Deserialize)]
struct FieldIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    field_type: Option<String>,
}

#[derive(Deserialize)]
struct AccountIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct PipelineIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "_embedded")]
    embedded: Option<PipelineEmbeddedIn>,
}

#[derive(Deserialize, Default)]
struct PipelinesIn {
    #[serde(default, rename = "_embedded")]
    embedded: Option<PipelinesEmbeddedIn>,
}

#[derive(Deserialize)]
struct PipelinesEmbeddedIn {
    #[serde(default)]
    pipelines: Vec<PipelineIn>,
}

#[derive(Deserialize)]
struct PipelineEmbeddedIn {
    #[serde(default)]
    statuses: Vec<StatusIn>,
}

#[derive(Deserialize)]
struct StatusIn {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WebhookIn {
    id: i64,
    destination: String,
    #[serde(default)]
    settings: Vec<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

// -------------------------------------------------------------------- inbound webhooks

/// One change amoCRM reports to our webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `leads[status][N][…]`: the lead moved to another stage.
    LeadStatusChanged {
        lead_id: i64,
        status_id: i64,
        pipeline_id: i64,
        old_status_id: Option<i64>,
        old_pipeline_id: Option<i64>,
    },
    /// `leads[delete][N][id]`.
    LeadDeleted { lead_id: i64 },
    /// Any other entity/action, kept so callers can log what they ignore.
    Other {
        entity: String,
        action: String,
        id: Option<i64>,
    },
}

/// A whole webhook delivery: the account it came from and its events in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookDelivery {
    pub account_id: Option<i64>,
    pub account_subdomain: Option<String>,
    pub events: Vec<WebhookEvent>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("amoCRM webhook field {key} is missing")]
    Missing { key: String },
    #[error("amoCRM webhook field {key} is not a number")]
    NotANumber { key: String },
}

/// Parses amoCRM's `application/x-www-form-urlencoded` webhook body (PHP-style bracket keys,
/// every value a string). Payloads are unsigned, so callers should re-read the lead through
/// the API before acting on it.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookDelivery, WebhookError> {
    // (entity, action, index) → field → value, for the flat fields of each item.
    let mut items: BTreeMap<(String, String, u32), HashMap<String, String>> = BTreeMap::new();
    let mut delivery = WebhookDelivery::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        let parts = super::bracket_parts(&key);
        match parts.as_slice() {
            [entity, action, index, field] => {
                if let Ok(index) = index.parse::<u32>() {
                    items
                        .entry((entity.to_string(), action.to_string(), index))
                        .or_default()
                        .insert(field.to_string(), value.into_owned());
                }
            }
            ["account", "id"] => delivery.account_id = value.trim().parse().ok(),
            ["account", "subdomain"] => delivery.account_subdomain = Some(value.into_owned()),
            _ => {}
        }
    }
    for ((entity, action, index), fields) in items {
        let key = |f: &str| format!("{entity}[{action}][{index}][{f}]");
        let number = |f: &str| -> Result<Option<i64>, WebhookError> {
            match fields.get(f) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| WebhookError::NotANumber { key: key(f) }),
            }
        };
        let required = |f: &str| -> Result<i64, WebhookError> {
            number(f)?.ok_or_else(|| WebhookError::Missing { key: key(f) })
        };
        let event = match (entity.as_str(), action.as_str()) {
            ("leads", "status") => WebhookEvent::LeadStatusChanged {
                lead_id: required("id")?,
                status_id: required("status_id")?,
                pipeline_id: required("pipeline_id")?,
                old_status_id: number("old_status_id")?,
                old_pipeline_id: number("old_pipeline_id")?,
            },
            ("leads", "delete") => WebhookEvent::LeadDeleted {
                lead_id: required("id")?,
            },
            _ => WebhookEvent::Other {
                id: number("id").ok().flatten(),
                entity,
                action,
            },
        };
        delivery.events.push(event);
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/contracts/amocrm");
        let path = std::path::Path::new(dir).join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!("contract file {} is missing ({e}); the contracts directory must sit beside the repository", path.display())
        })
    }

    #[test]
    fn parses_contacts_list_response() {
        let page: ContactsPage =
            serde_json::from_slice(&contract("contacts-list.response.json")).unwrap();
        assert_eq!(page.embedded.contacts.len(), 1);
        assert_eq!(page.embedded.contacts[0].id, 7143599);
        assert_eq!(page.embedded.contacts[0].phones().count(), 0);
    }

    #[test]
    fn parses_contact_custom_fields_values_fragment() {
        let contact: ContactIn = serde_json::from_slice(
            &[
                b"{\"id\": 1, ".as_slice(),
                &contract("contact-custom-fields-values.fragment.json")[1..],
            ]
            .concat(),
        )
        .unwrap();
        let values: Vec<&str> = contact.values_of("PHONE").collect();
        assert_eq!(values, vec!["+79123"]);
        // "+79123" is no valid phone: it must not match anything.
        assert_eq!(contact.phones().count(), 0);
    }

    #[test]
    fn parses_contacts_add_response() {
        let page: AddedPage<ContactsAddedEmbedded> =
            serde_json::from_slice(&contract("contacts-add.response.json")).unwrap();
        let ids: Vec<i64> = page.embedded.contacts.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![40401635, 40401636]);
    }

    #[test]
    fn parses_contacts_update_response() {
        let page: AddedPage<ContactsAddedEmbedded> =
            serde_json::from_slice(&contract("contacts-update.response.json")).unwrap();
        assert_eq!(page.embedded.contacts[0].id, 3);
    }

    #[test]
    fn parses_leads_complex_response() {
        let added: Vec<ComplexIn> =
            serde_json::from_slice(&contract("leads-complex.response.json")).unwrap();
        assert_eq!(added[0].id, 9774766);
        assert_eq!(added[0].contact_id, Some(12117258));
        assert_eq!(added[0].merged, Some(false));
    }

    #[test]
    fn parses_notes_add_response() {
        let page: AddedPage<NotesEmbedded> =
            serde_json::from_slice(&contract("notes-add.response.json")).unwrap();
        assert_eq!(page.embedded.notes[0].id, 76787983);
    }

    #[test]
    fn parses_note_params_fragments() {
        for name in [
            "note-params-common.fragment.json",
            "note-params-service-message.fragment.json",
        ] {
            let note: NoteIn = serde_json::from_slice(&contract(name)).unwrap();
            assert!(note.params.and_then(|p| p.text).is_some(), "{name}");
        }
    }

    #[test]
    fn parses_validation_error_response_into_a_permanent_error_with_paths() {
        let err = map_status(
            StatusCode::BAD_REQUEST,
            None,
            &contract("validation-error.response.json"),
            false,
        )
        .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.status(), Some(400));
        let d = &err.details()[0];
        assert_eq!(d.code, "NotSupportedChoice");
        assert_eq!(d.path, "custom_fields_values.0.field_id");
        assert_eq!(d.request_id.as_deref(), Some("0"));
        assert!(err.to_string().contains("Request validation failed"));
    }

    #[test]
    fn parses_webhook_status_lead_form_byte_exact() {
        let body = contract("webhook-status-lead.form.txt");
        assert!(
            !body.ends_with(b"\n"),
            "the contract body has no trailing newline"
        );
        let d = parse_webhook(&body).unwrap();
        assert_eq!(d.account_subdomain.as_deref(), Some("test000002"));
        assert_eq!(d.account_id, None);
        assert_eq!(
            d.events,
            vec![WebhookEvent::LeadStatusChanged {
                lead_id: 31926520,
                status_id: 10216994,
                pipeline_id: 2116,
                old_status_id: Some(10216995),
                old_pipeline_id: None,
            }]
        );
    }

    #[test]
    fn parses_webhook_status_lead_modern_decoded() {
        // The file is decoded `key=value` lines, not a wire body: encode it as amoCRM would.
        let text = String::from_utf8(contract("webhook-status-lead-modern.decoded.txt")).unwrap();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(text.lines().filter_map(|l| l.split_once('=')))
            .finish();
        let d = parse_webhook(body.as_bytes()).unwrap();
        assert_eq!(d.account_id, Some(29013640));
        assert_eq!(d.account_subdomain.as_deref(), Some("drvorobjev"));
        assert_eq!(
            d.events,
            vec![WebhookEvent::LeadStatusChanged {
                lead_id: 23802129,
                status_id: 47873533,
                pipeline_id: 5389528,
                old_status_id: Some(47888833),
                old_pipeline_id: Some(5389528),
            }]
        );
    }

    #[test]
    fn webhook_with_a_bad_number_names_the_key() {
        let err = parse_webhook(
            b"leads[status][0][id]=x&leads[status][0][status_id]=1&leads[status][0][pipeline_id]=2",
        )
        .unwrap_err();
        assert_eq!(
            err,
            WebhookError::NotANumber {
                key: "leads[status][0][id]".into()
            }
        );
        let d = parse_webhook(b"leads[add][0][id]=5&contacts[delete][0][id]=6").unwrap();
        assert_eq!(d.events.len(), 2);
    }

    #[test]
    fn statuses_map_to_retry_decisions() {
        let t = map_status(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"Too many",
            false,
        )
        .unwrap_err();
        assert!(t.is_transient());
        assert_eq!(t.retry_after(), Some(Duration::from_secs(3)));
        assert!(
            map_status(StatusCode::BAD_GATEWAY, None, b"", false)
                .unwrap_err()
                .is_transient()
        );
        assert!(matches!(
            map_status(StatusCode::PAYMENT_REQUIRED, None, b"", false).unwrap_err(),
            CrmError::PaymentRequired { status: 402, .. }
        ));
        let a = map_status(StatusCode::UNAUTHORIZED, None, b"{}", false).unwrap_err();
        assert!(a.is_auth() && a.to_string().contains("crm.amocrm.token"));
        assert_eq!(
            map_status(StatusCode::NO_CONTENT, None, b"", false).unwrap(),
            None
        );
    }

    #[test]
    fn bracket_keys_split() {
        assert_eq!(
            crate::crm::bracket_parts("leads[status][0][custom_fields][0][id]"),
            vec!["leads", "status", "0", "custom_fields", "0", "id"]
        );
        assert_eq!(crate::crm::bracket_parts("plain"), vec!["plain"]);
    }
}
