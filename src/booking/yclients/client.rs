//! Calls to YClients: the paced request with its 429 handling, the envelope, and the sorting
//! of an answer into data or a failure; the per-endpoint call counters.

use super::*;
use crate::connectors::calls::CountedEndpoint;
use crate::connectors::pacing::{self, Pace, YCLIENTS_INLINE_WAIT};

// ---------------------------------------------------------------------------------------------
// Call counters
// ---------------------------------------------------------------------------------------------

/// Every remote method we call, counted separately so a benchmark can say where calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Company,
    BookServices,
    BookStaff,
    BookDates,
    BookTimes,
    BookCheck,
    BookRecord,
    BookRecordMove,
    BookRecordGet,
    UserRecordDelete,
    RecordGet,
    RecordDelete,
    RecordUpdate,
    Records,
    ClientsSearch,
    ClientCreate,
    ClientGet,
    ClientUpdate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 18] = [
        Endpoint::Company,
        Endpoint::BookServices,
        Endpoint::BookStaff,
        Endpoint::BookDates,
        Endpoint::BookTimes,
        Endpoint::BookCheck,
        Endpoint::BookRecord,
        Endpoint::BookRecordMove,
        Endpoint::BookRecordGet,
        Endpoint::UserRecordDelete,
        Endpoint::RecordGet,
        Endpoint::RecordDelete,
        Endpoint::RecordUpdate,
        Endpoint::Records,
        Endpoint::ClientsSearch,
        Endpoint::ClientCreate,
        Endpoint::ClientGet,
        Endpoint::ClientUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Company => "company",
            Endpoint::BookServices => "book_services",
            Endpoint::BookStaff => "book_staff",
            Endpoint::BookDates => "book_dates",
            Endpoint::BookTimes => "book_times",
            Endpoint::BookCheck => "book_check",
            Endpoint::BookRecord => "book_record",
            Endpoint::BookRecordMove => "book_record_move",
            Endpoint::BookRecordGet => "book_record_get",
            Endpoint::UserRecordDelete => "user_records_delete",
            Endpoint::RecordGet => "record_get",
            Endpoint::RecordDelete => "record_delete",
            Endpoint::RecordUpdate => "record_update",
            Endpoint::Records => "records",
            Endpoint::ClientsSearch => "clients_search",
            Endpoint::ClientCreate => "client_create",
            Endpoint::ClientGet => "client_get",
            Endpoint::ClientUpdate => "client_update",
        }
    }
}

impl CountedEndpoint for Endpoint {
    const ALL: &'static [Endpoint] = &Endpoint::ALL;

    fn name(self) -> &'static str {
        Endpoint::name(self)
    }
}

/// HTTP requests sent per endpoint, retries included.
pub type CallCounters = crate::connectors::calls::CallCounters<Endpoint>;

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// How much later than its send time a request may reach YClients, compared with the request
/// five after it, before YClients counts six in one second (the 5 % margin of old).
const RATE_GUARD: StdDuration = StdDuration::from_millis(50);

pub struct Yclients {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) company_id: u64,
    pub(super) partner_token: SecretString,
    pub(super) user_token: Option<SecretString>,
    pub(super) partner_id: Option<u64>,
    pub(super) limiter: Arc<pacing::Pacer>,
    /// A per-minute ceiling for long runs (an import); `None` for the bot's short bursts.
    pub(super) minute_limiter: Option<DefaultDirectRateLimiter>,
    pub(super) max_retries: u32,
    pub(super) counters: CallCounters,
    pub(super) company: OnceCell<CompanyInfo>,
    pub(super) cache: Cache,
}

/// A decoded answer: the HTTP status and the `data` member (or the whole body when the answer
/// has no envelope, as `GET /book_record` and `/auth` do).
pub(super) struct Answer {
    pub(super) data: Value,
    /// `meta` of the envelope (`total_count` on lists); `Null` when absent.
    pub(super) meta: Value,
}

impl Yclients {
    /// Keeps YClients' per-address pace with every process sharing `store`: an agency's salons
    /// behind one egress address stay within 5 a second together, across instances and
    /// restarts.
    pub fn share_pace_through(&self, store: &crate::store::Store) {
        self.limiter.share_through(store);
    }

    pub fn new(config: &YclientsConfig, clock: Arc<dyn Clock>) -> Yclients {
        let http = http::booking_client(config.timeout_secs);
        // One request per period, no bursts: a burst of 5 followed by the refill would put up
        // to 9 requests into one wall-clock second. The 5 % margin (50 ms at 5 a second)
        // absorbs network jitter; a request held up for longer on its way keeps its place in
        // the window until its answer is in, so it cannot land in one second with the five
        // after it (on a loaded machine one did, and the import test saw six in a second).
        // YClients counts per IP address, so every client in this process (every business,
        // the booking client and an import) shares one limiter.
        let rate = config.rate_limit_per_second.max(1);
        let limiter = pacing::limiter(
            &format!(
                "yclients|{}",
                config.base_url.origin().ascii_serialization()
            ),
            Pace::sliding_second(rate, RATE_GUARD),
        );
        Yclients {
            http,
            base: format!("{}/api/v1", config.base_url.as_str().trim_end_matches('/')),
            company_id: config.company_id,
            partner_token: config.partner_token.clone(),
            user_token: config.user_token.clone(),
            partner_id: config.partner_id,
            limiter,
            minute_limiter: None,
            max_retries: config.max_retries,
            counters: CallCounters::default(),
            company: OnceCell::new(),
            cache: Cache {
                ttl: Duration::seconds(i64::try_from(config.slot_cache_ttl_secs).unwrap_or(0)),
                clock,
                slots: DashMap::new(),
                days: DashMap::new(),
                services: DashMap::new(),
                masters: DashMap::new(),
            },
        }
    }

    /// Also keeps under `per_minute` requests in any 60 seconds. The published limit is "200
    /// requests a minute, or 5 a second"; 5 a second sustained would be 300 a minute, so a run
    /// that lasts minutes (an import) honours both.
    pub fn with_minute_limit(mut self, per_minute: u32) -> Yclients {
        self.minute_limiter = minute_quota(per_minute).map(RateLimiter::direct);
        self
    }

    /// Requests sent so far, per endpoint.
    pub fn calls(&self) -> &CallCounters {
        &self.counters
    }

    /// Forgets cached slots and free days of one master on one salon-local day. Webhooks call
    /// this when the salon changes the schedule.
    pub fn invalidate_day(&self, master_id: &str, day: NaiveDate) {
        self.cache.invalidate_day(master_id, day);
    }

    /// Cache invalidation for a record webhook: the master's whole cache goes, because an
    /// update does not say which day the record moved away from.
    pub fn apply_webhook(&self, event: &RecordEvent) {
        if let Some(staff) = &event.staff_id {
            self.cache.invalidate_master(staff);
        } else {
            self.cache.slots.clear();
            self.cache.days.clear();
        }
    }

    pub(super) fn auth_header(&self, admin: bool) -> Result<HeaderValue, BookingError> {
        let mut value = format!("Bearer {}", self.partner_token.expose_secret());
        if admin {
            let user = self
                .user_token
                .as_ref()
                .ok_or_else(|| BookingError::auth("this operation needs a YClients user token"))?;
            value.push_str(", User ");
            value.push_str(user.expose_secret());
        }
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| BookingError::auth("a token contains invalid characters"))?;
        // Keeps the tokens out of any Debug output of the request.
        header.set_sensitive(true);
        Ok(header)
    }

    /// Sends one request, paced by the limiter. A 429 asking for at most [`YCLIENTS_INLINE_WAIT`]
    /// (Retry-After, else a doubling back-off) is waited out and repeated up to `max_retries`
    /// times: a client in the chat barely notices. A longer wait is not sat out here while the
    /// chat waits: the failure carries YClients' `Retry-After` to the caller, and the queue
    /// honours it.
    pub(super) async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        admin: bool,
    ) -> Result<Answer, BookingError> {
        let url = format!("{}{}", self.base, path);
        let auth = self.auth_header(admin)?;
        let mut backoff = StdDuration::from_millis(250);
        let mut attempt = 0;
        loop {
            if let Some(minute) = &self.minute_limiter {
                minute.until_ready().await;
            }
            let turn = self.limiter.turn().await;
            self.counters.hit(endpoint);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, ACCEPT_V2)
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, auth.clone())
                .query(query);
            if let Some(id) = self.partner_id {
                req = req.header("X-Partner-Id", id.to_string());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = http::transport_failure("YClients", endpoint.name(), e);
                    tracing::warn!(endpoint = endpoint.name(), error = %failure, "yclients unreachable");
                    return Err(failure.into());
                }
            };
            // The answer is in: YClients has counted the request.
            drop(turn);
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let hint = failure::retry_after(resp.headers());
                let wait = hint.unwrap_or(backoff);
                attempt += 1;
                if attempt > self.max_retries || wait > YCLIENTS_INLINE_WAIT {
                    tracing::warn!(
                        endpoint = endpoint.name(),
                        attempts = attempt,
                        retry_after_s = hint.map(|h| h.as_secs()),
                        "yclients is rate limiting; handing the wait to the caller"
                    );
                    return Err(Failure::from_status(
                        &ByStatus,
                        429,
                        None,
                        hint,
                        format!(
                            "YClients {} is rate limited (429 after {attempt} attempts)",
                            endpoint.name()
                        ),
                    )
                    .into());
                }
                tracing::info!(
                    endpoint = endpoint.name(),
                    wait_ms = wait.as_millis() as u64,
                    "yclients 429, waiting"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(YCLIENTS_INLINE_WAIT);
                continue;
            }
            let bytes = resp.bytes().await.map_err(|e| {
                BookingError::unavailable(format!(
                    "YClients {}: reading the answer: {}",
                    endpoint.name(),
                    e.without_url()
                ))
            })?;
            let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect())
                })
            };
            return map_answer(endpoint, status, body);
        }
    }

    /// The company record, read once per process: its zone decides every day boundary.
    pub async fn company(&self) -> Result<&CompanyInfo, BookingError> {
        self.company
            .get_or_try_init(|| async {
                let answer = self
                    .call(
                        Endpoint::Company,
                        Method::GET,
                        &format!("/company/{}/", self.company_id),
                        &[],
                        None,
                        false,
                    )
                    .await?;
                let wire: WireCompany = decode(Endpoint::Company, answer.data)?;
                let tz_name = wire.timezone_name.unwrap_or_default();
                let timezone: Tz = tz_name.parse().map_err(|_| {
                    BookingError::rejected(format!(
                        "company {} has no usable timezone_name ({tz_name:?})",
                        self.company_id
                    ))
                })?;
                Ok(CompanyInfo {
                    id: i64_of(&wire.id)
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(self.company_id),
                    title: str_of(&wire.title),
                    timezone,
                    address: str_of(&wire.address),
                    phone_confirmation: bool_of(&wire.phone_confirmation),
                })
            })
            .await
    }

    pub(super) async fn tz(&self) -> Result<Tz, BookingError> {
        Ok(self.company().await?.timezone)
    }

    /// Validates the tokens and the company id and lists what a client would see.
    pub async fn check(&self) -> Result<CheckReport, BookingError> {
        let company = self.company().await?.clone();
        let services = self.services().await?;
        let mut masters = Vec::new();
        for s in &services {
            masters.push((s.id.clone(), self.masters(&s.id).await?));
        }
        Ok(CheckReport {
            company,
            services,
            masters,
        })
    }

    pub(super) async fn book_services(
        &self,
        staff_id: Option<&str>,
    ) -> Result<WireBookServices, BookingError> {
        let query: Vec<(&str, String)> = staff_id
            .map(|s| vec![("staff_id", s.to_owned())])
            .unwrap_or_default();
        let answer = self
            .call(
                Endpoint::BookServices,
                Method::GET,
                &format!("/book_services/{}", self.company_id),
                &query,
                None,
                false,
            )
            .await?;
        decode(Endpoint::BookServices, answer.data)
    }

    pub(super) async fn book_staff(
        &self,
        service_id: Option<&str>,
    ) -> Result<Vec<Master>, BookingError> {
        let query = service_id.map(service_pairs).unwrap_or_default();
        let answer = self
            .call(
                Endpoint::BookStaff,
                Method::GET,
                &format!("/book_staff/{}", self.company_id),
                &query,
                None,
                false,
            )
            .await?;
        let staff: Vec<WireStaff> = decode(Endpoint::BookStaff, answer.data)?;
        Ok(staff
            .into_iter()
            .filter(|s| bool_of(&s.bookable))
            .filter_map(|s| {
                Some(Master {
                    id: id_of(&s.id)?,
                    name: str_of(&s.name),
                    specialization: str_of(&s.specialization),
                })
            })
            .collect())
    }

    /// One master's free slots on one salon-local day, cached.
    pub(super) async fn master_slots(
        &self,
        service_id: &str,
        master_id: &str,
        day: NaiveDate,
    ) -> Result<Vec<Slot>, BookingError> {
        let key = SlotKey {
            master: master_id.to_owned(),
            service: service_id.to_owned(),
            day,
        };
        if let Some(hit) = self.cache.get(&self.cache.slots, &key) {
            return Ok(hit);
        }
        let tz = self.tz().await?;
        let answer = self
            .call(
                Endpoint::BookTimes,
                Method::GET,
                &format!(
                    "/book_times/{}/{}/{}",
                    self.company_id,
                    master_id,
                    day.format("%Y-%m-%d")
                ),
                &service_pairs(service_id),
                None,
                false,
            )
            .await?;
        let times: Vec<WireTime> = decode(Endpoint::BookTimes, answer.data)?;
        let mut slots = Vec::with_capacity(times.len());
        for t in times {
            // The documented `datetime` first; the local `time` on the asked day as a fallback.
            let start = parse_instant(&t.datetime, tz).or_else(|| {
                let time = NaiveTime::parse_from_str(t.time.as_deref()?.trim(), "%H:%M").ok()?;
                local_to_utc(tz, day.and_time(time))
            });
            let Some(start) = start else {
                tracing::warn!(
                    master = master_id,
                    "yclients slot without a readable time, skipped"
                );
                continue;
            };
            slots.push(Slot {
                master_id: master_id.to_owned(),
                start,
                duration_min: minutes_of(
                    i64_of(&t.seance_length).unwrap_or(DEFAULT_SEANCE_SECONDS),
                ),
            });
        }
        slots.sort_by_key(|s| s.start);
        self.cache.put(&self.cache.slots, key, slots.clone());
        Ok(slots)
    }

    /// The datetime we send back in book_check/book_record/move: ISO 8601 with the salon's
    /// offset, the form book_times returns live and the older docs use in requests.
    pub(super) fn wire_datetime(start: DateTime<Utc>, tz: Tz) -> String {
        start
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// Re-reads one record by its external id; `None` when YClients no longer has it.
    pub(super) async fn read_record(
        &self,
        id: &ExternalId,
    ) -> Result<Option<Record>, BookingError> {
        let tz = self.tz().await?;
        let result = match (&id.hash, &self.user_token) {
            (Some(hash), _) => {
                self.call(
                    Endpoint::BookRecordGet,
                    Method::GET,
                    &format!("/book_record/{}/{}/{}", self.company_id, id.record_id, hash),
                    &[],
                    None,
                    false,
                )
                .await
            }
            (None, Some(_)) => {
                self.call(
                    Endpoint::RecordGet,
                    Method::GET,
                    &format!("/record/{}/{}", self.company_id, id.record_id),
                    &[],
                    None,
                    true,
                )
                .await
            }
            (None, None) => {
                return Err(BookingError::auth(
                    "reading a record without its hash needs a YClients user token",
                ));
            }
        };
        let answer = match result {
            Ok(a) => a,
            Err(BookingError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let wire: WireRecord = decode(Endpoint::RecordGet, answer.data)?;
        wire.to_record(id.to_string(), tz).map(Some)
    }

    /// One admin read (`GET /records`, today, one record): whether the account takes admin
    /// calls as configured. Writes nothing.
    pub async fn admin_read(&self) -> Result<(), BookingError> {
        let tz = self.tz().await?;
        let today = self.cache.clock.now().with_timezone(&tz).date_naive();
        self.call(
            Endpoint::Records,
            Method::GET,
            &format!("/records/{}", self.company_id),
            &[
                ("page", "1".into()),
                ("count", "1".into()),
                ("start_date", today.to_string()),
                ("end_date", today.to_string()),
            ],
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Admin record list for the days `[from, to]` (user token), deleted records included so
    /// cancellations are seen. Paged until `meta.total_count` records are read.
    pub async fn records(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Record>, BookingError> {
        Ok(self.records_paged(from, to).await?.records)
    }

    pub(super) async fn records_paged(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<super::super::RecordListing, BookingError> {
        let tz = self.tz().await?;
        let (items, calls) = self.wire_records(from, to, None, true).await?;
        let mut out = Vec::with_capacity(items.len());
        for r in items {
            let Some(id) = i64_of(&r.id).and_then(|n| u64::try_from(n).ok()) else {
                continue;
            };
            out.push(r.to_record(id.to_string(), tz)?);
        }
        Ok(super::super::RecordListing {
            records: out,
            calls,
        })
    }

    /// `GET /records/{company}` page by page. The docs give no maximum for `count` and a
    /// server may cut a page shorter than asked, so a short page is not the end: the listing
    /// goes on until `meta.total_count` records are read (or a page comes back empty).
    pub(super) async fn wire_records(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        staff_id: Option<&str>,
        with_deleted: bool,
    ) -> Result<(Vec<WireRecord>, usize), BookingError> {
        let mut out: Vec<WireRecord> = Vec::new();
        let mut calls = 0;
        for page in 1u32.. {
            calls += 1;
            let mut query = vec![
                ("page", page.to_string()),
                ("count", MAX_PAGE.to_string()),
                ("start_date", from.to_string()),
                ("end_date", to.to_string()),
            ];
            if with_deleted {
                query.push(("with_deleted", "1".into()));
            }
            if let Some(staff) = staff_id {
                query.push(("staff_id", staff.to_owned()));
            }
            let answer = self
                .call(
                    Endpoint::Records,
                    Method::GET,
                    &format!("/records/{}", self.company_id),
                    &query,
                    None,
                    true,
                )
                .await?;
            let total = answer
                .meta
                .get("total_count")
                .and_then(i64_of)
                .and_then(|t| usize::try_from(t).ok());
            let items: Vec<WireRecord> = decode(Endpoint::Records, answer.data)?;
            let n = items.len();
            out.extend(items);
            let done = match total {
                Some(total) => out.len() >= total,
                // Without a total, the older rule: a page shorter than asked is the last.
                None => n < MAX_PAGE as usize,
            };
            if done || n == 0 {
                break;
            }
        }
        Ok((out, calls))
    }
}

/// At most `per_minute` (10 or more) requests in any 60 seconds: a burst of 5, then the rest
/// of the minute's allowance evenly spread, with 2 % to spare for jitter.
pub(super) fn minute_quota(per_minute: u32) -> Option<Quota> {
    pub(super) const BURST: u32 = 5;
    let spread = u64::from(per_minute.max(2 * BURST) - BURST);
    let period = StdDuration::from_micros(61_200_000 / spread);
    let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}
