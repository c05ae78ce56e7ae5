//! Calls to Dikidi: the paced request with its slow-down handling, the envelope and the sorting
//! of vendor errors, the drift alarm, the widget session and the catalogue reads.

use super::*;

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// Every widget endpoint we call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    CompanyServices,
    GetDatesTrue,
    GetDatetimes,
    TimeReservation,
    Check,
    Record,
    RecordsInfo,
    RemoveRecord,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::CompanyServices,
        Endpoint::GetDatesTrue,
        Endpoint::GetDatetimes,
        Endpoint::TimeReservation,
        Endpoint::Check,
        Endpoint::Record,
        Endpoint::RecordsInfo,
        Endpoint::RemoveRecord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CompanyServices => "company_services",
            Endpoint::GetDatesTrue => "get_dates_true",
            Endpoint::GetDatetimes => "get_datetimes",
            Endpoint::TimeReservation => "time_reservation",
            Endpoint::Check => "check",
            Endpoint::Record => "record",
            Endpoint::RecordsInfo => "records_info",
            Endpoint::RemoveRecord => "remove_record",
        }
    }

    /// Paths as the OSS clients call them (docs/dikidi.md, "Endpoints").
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::CompanyServices => "/mobile/ajax/newrecord/company_services/",
            Endpoint::GetDatesTrue => "/ru/ajax/newrecord/get_dates_true/",
            Endpoint::GetDatetimes => "/ru/mobile/ajax/newrecord/get_datetimes/",
            Endpoint::TimeReservation => "/ru/ajax/newrecord/time_reservation/",
            Endpoint::Check => "/ru/mobile/newrecord/check/",
            Endpoint::Record => "/ru/ajax/newrecord/record/",
            Endpoint::RecordsInfo => "/ru/mobile/ajax/newrecord/records_info/",
            Endpoint::RemoveRecord => "/ru/mobile/newrecord/remove_record/",
        }
    }

    /// Reads can be repeated to probe whether a changed shape is back; writes cannot.
    pub(super) fn is_read(self) -> bool {
        matches!(
            self,
            Endpoint::CompanyServices
                | Endpoint::GetDatesTrue
                | Endpoint::GetDatetimes
                | Endpoint::RecordsInfo
        )
    }
}

impl crate::connectors::calls::CountedEndpoint for Endpoint {
    const ALL: &'static [Endpoint] = &Endpoint::ALL;

    fn name(self) -> &'static str {
        Endpoint::name(self)
    }
}

/// HTTP requests sent per endpoint.
pub type CallCounters = crate::connectors::calls::CallCounters<Endpoint>;

// ---------------------------------------------------------------------------------------------
// Drift state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct DriftInfo {
    pub(super) endpoint: Endpoint,
    /// The query of the failing request, so a read can be repeated as a probe.
    pub(super) query: Vec<(String, String)>,
    pub(super) sample: String,
}

#[derive(Debug, Default)]
pub(super) struct DriftState {
    pub(super) active: Option<DriftInfo>,
    /// Events raised by any call (a client's booking may be the first to see the change),
    /// handed out by the next poll.
    pub(super) outbox: Vec<DikidiEvent>,
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

/// A vendor error in any of its encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VendorError {
    pub(super) code: String,
    pub(super) message: String,
}

/// Runs every reader of a Dikidi answer over one body and drops the results: what fuzzing
/// drives, so each reader meets every shape.
pub(crate) fn read_every_answer(body: &[u8], tz: Tz) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let payload = match open_envelope(&value) {
        Ok(Ok(payload)) => payload,
        Ok(Err(_)) | Err(_) => value,
    };
    let _ = parse_catalog(payload.clone());
    let _ = parse_days(payload.clone());
    let _ = parse_datetimes(payload.clone(), tz);
    let _ = parse_records_info(payload, tz);
}

/// Opens the non-uniform envelope. `Ok(Ok(payload))` is a success (the `data` member, or the
/// body itself when it has none), `Ok(Err(_))` a vendor error in a known encoding, and
/// `Err(_)` a body that is neither: a changed shape.
pub(super) fn open_envelope(body: &Value) -> Result<Result<Value, VendorError>, String> {
    let Value::Object(map) = body else {
        return Err("the answer is not a JSON object".into());
    };
    let payload = || match map.get("data") {
        Some(data) => data.clone(),
        None => body.clone(),
    };
    let top_message = map.get("message").map(str_of).unwrap_or_default();
    let error = match map.get("error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(Ok(payload())),
        Some(e) => e,
    };
    let failure = |code: String, message: String| {
        Ok(Err(VendorError {
            code,
            message: if message.is_empty() {
                top_message.clone()
            } else {
                message
            },
        }))
    };
    match error {
        Value::Object(e) => {
            let Some(code) = e.get("code") else {
                return Err("`error` is an object without `code`".into());
            };
            let message = e.get("message").map(str_of).unwrap_or_default();
            match code {
                Value::Number(n) if n.as_i64() == Some(0) => Ok(Ok(payload())),
                Value::String(s) if s.trim() == "0" => Ok(Ok(payload())),
                Value::Number(_) | Value::String(_) => failure(str_of(code), message),
                _ => Err("`error.code` is neither a number nor a string".into()),
            }
        }
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Ok(payload())),
        Value::Number(n) => failure(n.to_string(), String::new()),
        Value::String(s) if s.trim() == "0" || s.trim().is_empty() => Ok(Ok(payload())),
        // `{"error": "Это не AJAX запрос"}`: the message is the error itself.
        Value::String(s) => failure(s.clone(), String::new()),
        Value::Bool(_) => failure("true".into(), String::new()),
        _ => Err("`error` has an unknown type".into()),
    }
}

/// A vendor error in a known encoding, mapped by the codes OSS clients report.
pub(super) fn map_vendor_error(endpoint: Endpoint, e: &VendorError) -> BookingError {
    let name = endpoint.name();
    let text = if e.message.is_empty() || e.message == e.code {
        e.code.clone()
    } else {
        format!("{} ({})", e.code, e.message)
    };
    let lower = e.code.to_lowercase();
    if lower.contains("ajax") {
        // Our own request lacks X-Requested-With: a bug on our side, not the salon's.
        return BookingError::rejected(format!(
            "Dikidi {name} refused the request as not coming from its widget: {text}"
        ));
    }
    match e.code.as_str() {
        "COMPANY_ERROR" => BookingError::NotFound(format!("Dikidi {name}: company: {text}")),
        "USER_AUTHORISATION_ERROR" | "USER_AUTHORISATION_DATA_ERROR" | "400"
            if matches!(endpoint, Endpoint::Check | Endpoint::Record) =>
        {
            // The widget wants a signed-in client, which a bot cannot be.
            BookingError::Closed(format!("Dikidi {name} demands a signed-in client: {text}"))
        }
        "USER_AUTHORISATION_ERROR" | "USER_AUTHORISATION_DATA_ERROR" | "400" => {
            BookingError::auth(format!("Dikidi {name}: {text}"))
        }
        "NUMBER_NOT_TRUE" => {
            BookingError::rejected(format!("Dikidi {name} refused the phone number: {text}"))
        }
        _ if endpoint == Endpoint::TimeReservation => {
            // A reservation fails when the time is no longer free; no OSS client distinguishes
            // other reasons, so neither can we.
            tracing::info!(code = %e.code, "dikidi refused the reservation; reading as taken");
            BookingError::SlotTaken
        }
        "1" => BookingError::NotFound(format!("Dikidi {name}: {text}")),
        _ => BookingError::rejected(format!("Dikidi {name}: {text}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// How calls authenticate. The partner variant holds the token for the day its contract is
/// known; until then no partner call leaves the process.
pub(super) enum Auth {
    Widget,
    #[allow(dead_code)] // Kept for the partner calls once their contract is known.
    Partner {
        token: SecretString,
    },
}

pub struct Dikidi {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) company_id: u64,
    pub(super) mode: DikidiMode,
    pub(super) auth: Auth,
    pub(super) tz: Tz,
    pub(super) user_agent: String,
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) counters: CallCounters,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) catalog_ttl: Duration,
    pub(super) catalog: Mutex<Option<(DateTime<Utc>, Catalog)>>,
    pub(super) drift: Mutex<DriftState>,
    pub(super) poll_budget: u32,
    /// Where the previous poll stopped when the budget ran out.
    pub(super) poll_cursor: AtomicUsize,
    /// Bookings whose `record` step waits for the client's SMS code, by our booking id.
    pub(super) pending: Mutex<HashMap<BookingId, PendingRecord>>,
    /// Known records `records_info` left out, already alarmed about.
    pub(super) missing: Mutex<BTreeSet<RecordId>>,
    pub(crate) poll_interval: StdDuration,
    pub(crate) poll_jitter: StdDuration,
}

/// One answer: the HTTP status, the body as JSON (or why it is not), and any cookie set.
pub(super) struct Raw {
    pub(super) body: Value,
    pub(super) cookies: Vec<String>,
}

/// A widget session as the widget holds it: the hash it sends as `session` (query and form)
/// and the cookies Dikidi set when it opened.
#[derive(Debug, Clone)]
pub(super) struct WidgetSession {
    pub(super) hash: String,
    pub(super) cookies: Vec<String>,
}

impl WidgetSession {
    /// The hash is the part after `~` of the `cookie_name` cookie (`Zimin0/Custom-Dikidi-Api:
    /// utils.py @ 928fcc0`, `book()`, step 0), percent-decoded.
    pub(super) fn from_cookies(cookies: Vec<String>) -> Option<WidgetSession> {
        let raw = cookies
            .iter()
            .find_map(|c| c.strip_prefix("cookie_name="))?
            .split_once('~')?
            .1
            .to_owned();
        let hash: String = url::form_urlencoded::parse(format!("h={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())?;
        (!hash.trim().is_empty()).then_some(WidgetSession { hash, cookies })
    }
}

/// A booking whose `record` step waits for the client's code. Never logged: the session is a
/// credential of that booking.
#[derive(Clone)]
pub(super) struct PendingRecord {
    pub(super) session: WidgetSession,
    /// The `record` form without `code`.
    pub(super) form: Vec<(&'static str, String)>,
    pub(super) request: BookRequest,
    pub(super) master_id: String,
    pub(super) since: DateTime<Utc>,
    pub(super) resent: bool,
}

/// What a `record` refusal demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Demand {
    Code,
    Captcha,
}

/// What the `record` step answered.
pub(super) enum RecordOutcome {
    Booked(WireRecordAnswer),
    /// The salon wants the SMS code Dikidi sent to the client (or the one sent was wrong).
    CodeDemanded,
    /// The salon wants a captcha solved; never attempted.
    Captcha(String),
}

/// Which demand a `record` refusal carries. No public client shows the refusal itself; the
/// form's `code` and `captcha_token` fields are all the sources give, so the refusal is read
/// by its words (docs/dikidi.md).
pub(super) fn demand_of(e: &VendorError) -> Option<Demand> {
    let text = format!("{} {}", e.code, e.message).to_lowercase();
    if ["captcha", "капч"].iter().any(|k| text.contains(k)) {
        return Some(Demand::Captcha);
    }
    ["code", "sms", "смс", "код"]
        .iter()
        .any(|k| text.contains(k))
        .then_some(Demand::Code)
}

impl Dikidi {
    /// `business_tz` is used when the section names no zone of its own.
    pub fn new(config: &DikidiConfig, business_tz: Tz, clock: Arc<dyn Clock>) -> Dikidi {
        let http = http::booking_client(config.timeout_secs);
        let rate = config.rate_limit_per_second.max(1);
        // One request per period, no bursts: politeness to a site that never agreed to us.
        let period = StdDuration::from_micros(1_000_000 / u64::from(rate));
        let auth = match (config.mode, &config.partner_token) {
            (DikidiMode::Partner, Some(token)) => Auth::Partner {
                token: token.clone(),
            },
            _ => Auth::Widget,
        };
        Dikidi {
            http,
            base: config.base_url.as_str().trim_end_matches('/').to_owned(),
            company_id: config.company_id,
            mode: config.mode,
            auth,
            tz: config.timezone.unwrap_or(business_tz),
            user_agent: config.user_agent(),
            // This client's own, not shared through `pacing::limiter`.
            limiter: RateLimiter::direct(Pace::Even { period }.quota()),
            counters: CallCounters::default(),
            clock,
            catalog_ttl: Duration::seconds(i64::try_from(config.catalog_cache_secs).unwrap_or(0)),
            catalog: Mutex::new(None),
            drift: Mutex::new(DriftState::default()),
            poll_budget: config.poll_budget.max(1),
            poll_cursor: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
            missing: Mutex::new(BTreeSet::new()),
            poll_interval: StdDuration::from_secs(config.poll_interval_secs.max(1)),
            poll_jitter: StdDuration::from_secs(config.poll_jitter_secs),
        }
    }

    pub fn mode(&self) -> DikidiMode {
        self.mode
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn calls(&self) -> &CallCounters {
        &self.counters
    }

    /// The endpoint whose answer no longer parses, while booking is switched off.
    pub fn drifted(&self) -> Option<(String, String)> {
        let d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        d.active
            .as_ref()
            .map(|a| (a.endpoint.name().to_owned(), a.sample.clone()))
    }

    /// Events raised outside a poll (e.g. by a booking that met a changed shape).
    pub fn take_events(&self) -> Vec<DikidiEvent> {
        std::mem::take(&mut self.drift.lock().unwrap_or_else(|p| p.into_inner()).outbox)
    }

    pub(super) fn shape_changed(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        body: &Value,
        why: &str,
    ) -> BookingError {
        let sample = sample_of(body);
        let mut d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        if d.active.is_none() {
            tracing::error!(
                endpoint = endpoint.name(),
                problem = why,
                sample = %sample,
                "Dikidi's API changed: a payload no longer parses; booking into Dikidi is off"
            );
            d.active = Some(DriftInfo {
                endpoint,
                query: query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                sample: sample.clone(),
            });
            d.outbox.push(DikidiEvent::ApiChanged {
                endpoint: endpoint.name().to_owned(),
                sample,
            });
        } else {
            tracing::warn!(
                endpoint = endpoint.name(),
                problem = why,
                "dikidi payload still unreadable"
            );
        }
        BookingError::Closed(format!(
            "Dikidi's API changed: {} answered in an unknown shape ({why})",
            endpoint.name()
        ))
    }

    /// A payload of `endpoint` parsed: if that endpoint had raised the alarm, it is over.
    pub(super) fn shape_ok(&self, endpoint: Endpoint) {
        let mut d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        if d.active.as_ref().is_some_and(|a| a.endpoint == endpoint) {
            Self::recover(&mut d);
        }
    }

    pub(super) fn recover(d: &mut DriftState) {
        if d.active.take().is_some() {
            tracing::warn!("Dikidi's payloads parse again; booking into Dikidi is back on");
            d.outbox.push(DikidiEvent::ApiRecovered);
        }
    }

    /// Sends one request, paced per company. A 429/503 is waited out once (Retry-After up to
    /// 30 s, as the OSS pollers do); other failures come back for the caller to map.
    pub(super) async fn send(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        cookies: &[String],
    ) -> Result<Raw, BookingError> {
        if let Auth::Partner { .. } = self.auth {
            return Err(BookingError::rejected(PARTNER_NOT_CONFIGURED));
        }
        let url = format!("{}{}", self.base, endpoint.path());
        let name = endpoint.name();
        let mut retried = false;
        loop {
            self.limiter.until_ready().await;
            self.counters.hit(endpoint);
            let mut req = match form {
                Some(_) => self.http.post(&url),
                None => self.http.get(&url),
            }
            .query(query)
            .header(USER_AGENT, &self.user_agent)
            // The widget endpoints answer only AJAX requests; this says what we are, not who.
            .header("X-Requested-With", "XMLHttpRequest")
            .header(ACCEPT, "application/json, text/javascript, */*; q=0.01")
            .header(REFERER, format!("{}/{}", self.base, self.company_id));
            if let Some(form) = form {
                req = req.form(form);
            }
            if !cookies.is_empty() {
                req = req.header(COOKIE, cookies.join("; "));
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = http::transport_failure("Dikidi", name, e);
                    tracing::warn!(endpoint = name, error = %failure, "dikidi unreachable");
                    return Err(failure.into());
                }
            };
            let status = resp.status();
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let hint = failure::retry_after(resp.headers());
                let wait = hint.unwrap_or(StdDuration::from_secs(1));
                // One short wait is sat out; a longer one is not, while a client waits in the
                // chat: the hint goes to the caller (the queue honours it).
                if retried || wait > DIKIDI_INLINE_WAIT {
                    return Err(Failure::from_status(
                        &ByStatus,
                        status.as_u16(),
                        None,
                        hint,
                        format!(
                            "Dikidi {name}: HTTP {} (asked to wait {} s)",
                            status.as_u16(),
                            wait.as_secs()
                        ),
                    )
                    .into());
                }
                retried = true;
                tracing::info!(
                    endpoint = name,
                    wait_ms = wait.as_millis() as u64,
                    "dikidi asks us to slow down"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let cookies: Vec<String> = resp
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| v.contains('='))
                .collect();
            let html = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("html"));
            let bytes = resp.bytes().await.map_err(|e| {
                BookingError::unavailable(format!("Dikidi {name}: reading: {}", e.without_url()))
            })?;
            // PHP sites often label JSON as text/html, so the body decides, not the header.
            let body: Option<Value> = serde_json::from_slice(&bytes).ok();
            let Some(body) = body else {
                // An HTML page (bot challenge, 403, maintenance) is an outage, not drift.
                let what = if html || bytes.trim_ascii_start().starts_with(b"<") {
                    "an HTML page (a bot challenge or an error page)"
                } else {
                    "a body that is not JSON"
                };
                tracing::warn!(
                    endpoint = name,
                    status = status.as_u16(),
                    "dikidi answered {what}"
                );
                return Err(BookingError::unavailable(format!(
                    "Dikidi {name}: HTTP {} with {what}",
                    status.as_u16()
                )));
            };
            if status == StatusCode::NOT_FOUND {
                return Err(BookingError::NotFound(format!("Dikidi {name}: HTTP 404")));
            }
            if status.is_server_error() {
                return Err(BookingError::unavailable(format!(
                    "Dikidi {name}: HTTP {}",
                    status.as_u16()
                )));
            }
            return Ok(Raw { body, cookies });
        }
    }

    /// Sends, opens the envelope and parses the payload with `parse`; a failure at either step
    /// raises the drift alarm.
    pub(super) async fn call<T>(
        &self,
        endpoint: Endpoint,
        query: &[(&str, String)],
        form: Option<&[(&str, String)]>,
        cookies: &[String],
        parse: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<(T, Vec<String>), BookingError> {
        let raw = self.send(endpoint, query, form, cookies).await?;
        let payload = match open_envelope(&raw.body) {
            Ok(Ok(payload)) => payload,
            Ok(Err(vendor)) => {
                // A known error encoding still means the shape is understood.
                self.shape_ok(endpoint);
                return Err(map_vendor_error(endpoint, &vendor));
            }
            Err(why) => return Err(self.shape_changed(endpoint, query, &raw.body, &why)),
        };
        match parse(payload) {
            Ok(v) => {
                self.shape_ok(endpoint);
                Ok((v, raw.cookies))
            }
            Err(why) => Err(self.shape_changed(endpoint, query, &raw.body, &why)),
        }
    }

    pub(super) fn company(&self) -> String {
        self.company_id.to_string()
    }

    pub(super) async fn catalog(&self) -> Result<Catalog, BookingError> {
        {
            let cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, c)) = cached.as_ref()
                && self.clock.now() < *at + self.catalog_ttl
            {
                return Ok(c.clone());
            }
        }
        let query = [
            ("company", self.company()),
            ("lang", "ru".into()),
            ("array", "1".into()),
        ];
        let (catalog, _) = self
            .call(Endpoint::CompanyServices, &query, None, &[], parse_catalog)
            .await?;
        if self.catalog_ttl > Duration::zero() {
            *self.catalog.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((self.clock.now(), catalog.clone()));
        }
        Ok(catalog)
    }

    pub(super) async fn datetimes(
        &self,
        service_id: &str,
        master_id: Option<&str>,
        day: Option<NaiveDate>,
    ) -> Result<Datetimes, BookingError> {
        let mut query = vec![
            ("company_id", self.company()),
            ("service_id[]", service_id.to_owned()),
        ];
        if let Some(m) = master_id {
            query.push(("master_id", m.to_owned()));
        }
        match day {
            Some(d) => {
                query.push(("date", d.format("%Y-%m-%d").to_string()));
                query.push(("with_first", "0".into()));
            }
            None => query.push(("with_first", "1".into())),
        }
        let tz = self.tz;
        let (dt, _) = self
            .call(Endpoint::GetDatetimes, &query, None, &[], |p| {
                parse_datetimes(p, tz)
            })
            .await?;
        Ok(dt)
    }
}
