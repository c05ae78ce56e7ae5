//! `POST /forms/{form}`: applications from any landing page, form-encoded or JSON. CORS for
//! the configured origins, a honeypot field and a per-address rate limit keep bots out; a bad
//! field gets a 422 naming it, and a good application is stored with its AlfaCRM job in one
//! transaction before we answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::clock::Clock;
use crate::domain::{Channel, Source, Utm};
use crate::normalize::{Email, Phone};
use crate::school::applications::{self, NewApplication};
use crate::school::config::SchoolConfig;
use crate::store::Store;

const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct FormsState {
    pub store: Store,
    pub business_id: String,
    pub clock: Arc<dyn Clock>,
    pub school: SchoolConfig,
    /// Whether applications are queued for AlfaCRM.
    pub deliver_to_alfacrm: bool,
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl FormsState {
    pub fn new(
        store: Store,
        business_id: &str,
        clock: Arc<dyn Clock>,
        school: SchoolConfig,
    ) -> FormsState {
        let per_minute = NonZeroU32::new(school.forms.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(school.forms.burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst));
        FormsState {
            store,
            business_id: business_id.into(),
            clock,
            deliver_to_alfacrm: school.alfacrm.is_some(),
            school,
            limiter: Arc::new(limiter),
        }
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
    if state.school.forms.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.map(|p| p.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Field values from a JSON object or a urlencoded body; the first non-empty value wins.
fn fields(
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

async fn count(state: &FormsState, form: &str, reason: &str) {
    if let Err(e) = applications::count_spam(&state.store, &state.business_id, form, reason).await {
        tracing::warn!(error = %e, "cannot count turned-away form post");
    }
}

async fn submit(
    State(state): State<FormsState>,
    Path(form): Path<String>,
    request: Request,
) -> Response {
    if form.is_empty()
        || form.len() > 64
        || !form
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return problem(StatusCode::NOT_FOUND, None, "unknown form");
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let address = client_address(&state, &headers, peer);
    if state.limiter.check_key(&address).is_err() {
        count(&state, &form, "rate_limited").await;
        tracing::warn!(%form, "form posts from one address over the limit");
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
    if fields.contains_key(&state.school.forms.honeypot_field) {
        count(&state, &form, "honeypot").await;
        tracing::info!(%form, "honeypot field filled: application dropped");
        // Answered like a success, so the bot learns nothing.
        return accepted("");
    }
    let get = |k: &str| fields.get(k).map(|v| v.trim().to_string());
    let Some(name) = get("name") else {
        return invalid("name", "name is required");
    };
    if name.chars().count() > 200 {
        return invalid("name", "name is too long");
    }
    let Some(phone) = get("phone") else {
        return invalid("phone", "phone is required");
    };
    let Ok(phone) = Phone::parse(&phone) else {
        return invalid("phone", "phone is not a valid phone number");
    };
    let email = match get("email").map(|e| Email::parse(&e)).transpose() {
        Ok(e) => e,
        Err(_) => return invalid("email", "email is not a valid e-mail address"),
    };
    let course = get("course");
    if !state.school.courses.is_empty() {
        match &course {
            None => return invalid("course", "course is required"),
            Some(key) if state.school.course(key).is_none() => {
                return invalid("course", "course is not one this school offers");
            }
            _ => {}
        }
    }
    let group_id = match get("group").or_else(|| get("group_id")) {
        None => None,
        Some(g) => {
            let allowed = course
                .as_deref()
                .and_then(|k| state.school.course(k))
                .map(|c| c.alfacrm_group_ids.clone())
                .unwrap_or_default();
            match g.parse::<i64>() {
                Ok(id) if allowed.contains(&id) => Some(id),
                _ => return invalid("group", "group is not a group of this course"),
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
    let new = NewApplication {
        form: form.clone(),
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
            link_name: Some(form.clone()),
            utm,
        },
        referrer,
    };
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
            tracing::info!(%form, application = %app.id, phone = %app.phone.masked(), "application stored");
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
