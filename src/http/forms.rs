//! `POST /forms/{form}`: applications from the configured landing forms, form-encoded or JSON.
//! CORS for the configured origins, a honeypot field and a per-address rate limit keep bots
//! out; a bad field gets a 422 naming it, and a good application is stored with its AlfaCRM job
//! in one transaction before we answer.
//!
//! Spam costs nothing: an unknown form is a 404 before anything is read, turned-away posts are
//! counted in memory and written as one counter per form and reason every
//! `spam_flush_interval`, and the rate limiter forgets quiet addresses and tracks at most
//! [`MAX_TRACKED_ADDRESSES`]. A post is checked against the limit only once it is valid, so a
//! visitor correcting a field is not locked out by their own mistakes.

use crate::domain::BusinessId;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::clock::Clock;
use crate::domain::{Channel, Source, Utm};
use crate::normalize::{Email, Phone};
use crate::school::applications::{self, NewApplication};
use crate::school::config::SchoolConfig;
use crate::store::Store;

const MAX_BODY: usize = 64 * 1024;

/// Addresses (IPv6: /64 networks) the rate limiter remembers at most. Past it, quiet ones are
/// forgotten; when a flood of distinct addresses keeps it full, new addresses are turned away
/// until the old ones fall quiet.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Why a post was turned away, as counted in `school_spam`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpamReason {
    Honeypot,
    RateLimited,
}

impl SpamReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SpamReason::Honeypot => "honeypot",
            SpamReason::RateLimited => "rate_limited",
        }
    }
}

#[derive(Clone)]
pub struct FormsState {
    pub store: Store,
    pub business_id: BusinessId,
    pub clock: Arc<dyn Clock>,
    pub school: SchoolConfig,
    /// Whether applications are queued for AlfaCRM.
    pub deliver_to_alfacrm: bool,
    /// `http.trusted_proxies`: hops stripped from the right of `X-Forwarded-For`.
    trusted_proxies: Arc<Vec<IpNet>>,
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Unix seconds of the last sweep of quiet addresses, so a flood sweeps once a second.
    last_sweep: Arc<AtomicI64>,
    /// Turned-away posts not yet written, per known form and reason.
    spam: Arc<DashMap<(String, SpamReason), i64>>,
}

impl FormsState {
    pub fn new(
        store: Store,
        business_id: &BusinessId,
        clock: Arc<dyn Clock>,
        school: SchoolConfig,
        trusted_proxies: Vec<IpNet>,
    ) -> FormsState {
        let per_minute = NonZeroU32::new(school.forms.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(school.forms.burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst));
        FormsState {
            store,
            business_id: business_id.clone(),
            clock,
            deliver_to_alfacrm: school.alfacrm.is_some(),
            school,
            trusted_proxies: Arc::new(trusted_proxies),
            limiter: Arc::new(limiter),
            last_sweep: Arc::new(AtomicI64::new(0)),
            spam: Arc::new(DashMap::new()),
        }
    }

    /// Addresses the rate limiter currently remembers.
    pub fn tracked_addresses(&self) -> usize {
        self.limiter.len()
    }

    /// Writes the turned-away posts counted since the last flush: one statement per form and
    /// reason. A count that cannot be written is kept for the next flush.
    pub async fn flush_spam(&self) {
        let keys: Vec<(String, SpamReason)> = self.spam.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some((key, hits)) = self.spam.remove(&key) else {
                continue;
            };
            let (form, reason) = (&key.0, key.1);
            if let Err(e) =
                applications::add_spam(&self.store, &self.business_id, form, reason.as_str(), hits)
                    .await
            {
                tracing::warn!(error = %e, %form, "cannot write the turned-away form posts; kept for the next flush");
                *self.spam.entry(key).or_insert(0) += hits;
            }
        }
    }

    /// Until `stop` turns true: flushes spam counters and forgets quiet addresses every
    /// `spam_flush_interval`; flushes once more on the way out.
    pub async fn run_housekeeping(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let every = self.school.forms.spam_flush_interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.housekeep().await;
        }
        self.flush_spam().await;
    }

    /// One round of housekeeping: spam counters written, quiet addresses forgotten.
    pub async fn housekeep(&self) {
        self.flush_spam().await;
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn count(&self, form: &str, reason: SpamReason) {
        *self.spam.entry((form.to_string(), reason)).or_insert(0) += 1;
    }

    /// Whether `key` may post now. Past [`MAX_TRACKED_ADDRESSES`] quiet addresses are swept
    /// (at most once a second); if that frees nothing, the post is turned away.
    fn allow(&self, key: &IpAddr) -> bool {
        if self.limiter.len() >= MAX_TRACKED_ADDRESSES {
            let now = chrono::Utc::now().timestamp();
            if self.last_sweep.swap(now, Ordering::Relaxed) != now {
                self.limiter.retain_recent();
            }
            if self.limiter.len() >= MAX_TRACKED_ADDRESSES {
                return false;
            }
        }
        self.limiter.check_key(key).is_ok()
    }
}

/// What one visitor is limited by: an IPv4 address, or the /64 network an IPv6 address is in
/// (one subscriber usually holds a whole /64).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !(u128::from(u64::MAX));
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

pub fn router(state: FormsState) -> Router {
    let origins: Vec<HeaderValue> = state
        .school
        .forms
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT]);
    Router::new()
        .route("/forms/{form}", post(submit))
        .layer(cors)
        .with_state(state)
}

fn problem(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let mut body = json!({"ok": false, "error": message});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, axum::Json(body)).into_response()
}

fn invalid(field: &str, message: &str) -> Response {
    problem(StatusCode::UNPROCESSABLE_ENTITY, Some(field), message)
}

fn client_address(state: &FormsState, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    let peer = peer
        .map(|p| p.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if !state.school.forms.trust_forwarded_for {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    forwarded_client(peer, &forwarded, &state.trusted_proxies)
}

/// The client behind a chain of proxies. Each proxy appends the address it heard from, so only
/// the right end of `X-Forwarded-For` is trustworthy: hops in `trusted` are stripped from the
/// right and the first other address is the client; whatever stands left of it was written
/// by the client and is ignored. With no `trusted` list the peer is taken to be the one proxy.
/// A peer outside a configured `trusted` list reached us directly, and is the client itself.
pub fn forwarded_client(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !trusted.is_empty() && !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage where an address should be: the last address we could vouch for.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        })
}

/// Field values from a JSON object or a urlencoded body; the first non-empty value wins.
pub(crate) fn fields(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, (StatusCode, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let mut out = HashMap::new();
    if json {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err((StatusCode::BAD_REQUEST, "body must be a JSON object".into()));
        };
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            out.insert(k, text);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            if !v.trim().is_empty() {
                out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
    }
    out.retain(|_, v| !v.trim().is_empty());
    Ok(out)
}

fn wants_json(state: &FormsState, headers: &HeaderMap) -> bool {
    let header_has = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
    };
    state.school.forms.thank_you_url.is_none()
        || header_has(header::ACCEPT)
        || header_has(header::CONTENT_TYPE)
}

async fn submit(
    State(state): State<FormsState>,
    Path(form): Path<String>,
    request: Request,
) -> Response {
    if !state.school.forms.names.contains(&form) {
        return problem(StatusCode::NOT_FOUND, None, "unknown form");
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, None, "body too large");
    };
    let fields = match fields(&headers, &body) {
        Ok(f) => f,
        Err((status, message)) => return problem(status, None, &message),
    };
    let json_answer = wants_json(&state, &headers);
    let accepted = |id: &str| -> Response {
        match (&state.school.forms.thank_you_url, json_answer) {
            (Some(url), false) => Redirect::to(url.as_str()).into_response(),
            _ => (StatusCode::OK, axum::Json(json!({"ok": true, "id": id}))).into_response(),
        }
    };
    let new = match application(&state.school, &form, &fields, &headers) {
        Ok(new) => new,
        Err(rejected) => return rejected,
    };
    // Only a valid post uses up the address's allowance.
    let address = limit_key(client_address(&state, &headers, peer));
    if !state.allow(&address) {
        state.count(&form, SpamReason::RateLimited);
        tracing::debug!(%form, "form posts from one address over the limit");
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            "too many applications from this address, try again in a minute",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    }
    if fields.contains_key(&state.school.forms.honeypot_field) {
        state.count(&form, SpamReason::Honeypot);
        tracing::debug!(%form, "honeypot field filled: application dropped");
        // Answered like a success, with an id like a real one, so the bot learns nothing.
        return accepted(&crate::store::new_id());
    }
    match applications::submit(
        &state.store,
        &state.business_id,
        new,
        state.deliver_to_alfacrm,
        state.clock.now(),
    )
    .await
    {
        Ok(app) => {
            tracing::info!(%form, application = %app.id, phone = %app.details.phone.masked(), "application stored");
            accepted(&app.id)
        }
        Err(e) => {
            tracing::error!(%form, error = %e, "cannot store application");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "cannot take applications right now, try again",
            )
        }
    }
}

/// The application a post describes, or the 422 naming its first bad field.
#[allow(clippy::result_large_err)] // The error is the response itself.
pub(crate) fn application(
    school: &SchoolConfig,
    form: &str,
    fields: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<NewApplication, Response> {
    let get = |k: &str| fields.get(k).map(|v| v.trim().to_string());
    let Some(name) = get("name") else {
        return Err(invalid("name", "name is required"));
    };
    if name.chars().count() > 200 {
        return Err(invalid("name", "name is too long"));
    }
    let Some(phone) = get("phone") else {
        return Err(invalid("phone", "phone is required"));
    };
    let Ok(phone) = Phone::parse(&phone) else {
        return Err(invalid("phone", "phone is not a valid phone number"));
    };
    let email = match get("email").map(|e| Email::parse(&e)).transpose() {
        Ok(e) => e,
        Err(_) => return Err(invalid("email", "email is not a valid e-mail address")),
    };
    let course = get("course");
    if !school.courses.is_empty() {
        match &course {
            None => return Err(invalid("course", "course is required")),
            Some(key) if school.course(key).is_none() => {
                return Err(invalid("course", "course is not one this school offers"));
            }
            _ => {}
        }
    }
    let group_id = match get("group").or_else(|| get("group_id")) {
        None => None,
        Some(g) => {
            let allowed = course
                .as_deref()
                .and_then(|k| school.course(k))
                .map(|c| c.alfacrm_group_ids.clone())
                .unwrap_or_default();
            match g.parse::<i64>() {
                Ok(id) if allowed.contains(&id) => Some(id),
                _ => return Err(invalid("group", "group is not a group of this course")),
            }
        }
    };
    let trial = get("trial").is_some_and(|t| matches!(t.as_str(), "1" | "true" | "on" | "yes"));
    let comment = get("comment").map(|c| c.chars().take(2000).collect());
    let utm = Utm {
        source: get("utm_source"),
        medium: get("utm_medium"),
        campaign: get("utm_campaign"),
        content: get("utm_content"),
        term: get("utm_term"),
    };
    let referrer = get("referrer").or_else(|| {
        headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    });
    Ok(NewApplication {
        form: form.to_string(),
        name,
        phone,
        email,
        course,
        group_id,
        trial,
        comment,
        source: Source {
            channel: Channel::WebForm,
            payload: None,
            link_name: Some(form.to_string()),
            utm,
        },
        referrer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_read_from_the_right_past_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ip("10.0.0.2");
        // The client forged the left entry; the proxy appended what it heard.
        assert_eq!(
            forwarded_client(proxy, &["6.6.6.6, 203.0.113.7"], &trusted),
            ip("203.0.113.7")
        );
        // Two of our proxies in a row, the header split over two lines.
        assert_eq!(
            forwarded_client(proxy, &["1.1.1.1, 203.0.113.7", "10.1.2.3"], &trusted),
            ip("203.0.113.7")
        );
        // Someone reaching us past the proxy is limited by their own address.
        assert_eq!(
            forwarded_client(ip("198.51.100.9"), &["203.0.113.7"], &trusted),
            ip("198.51.100.9")
        );
        // No list: the peer is the one proxy, its entry is the rightmost.
        assert_eq!(
            forwarded_client(proxy, &["6.6.6.6, 203.0.113.7"], &[]),
            ip("203.0.113.7")
        );
        assert_eq!(forwarded_client(proxy, &[], &trusted), proxy);
        assert_eq!(
            forwarded_client(proxy, &["203.0.113.7:5555"], &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(proxy, &["unknown, 10.9.9.9"], &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn ipv6_visitors_are_limited_per_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
