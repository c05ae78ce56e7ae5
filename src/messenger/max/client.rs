//! Calls to the MAX Bot API: the paced request with its 429 handling, the error type and what
//! the queue does about each error, sending and editing, and the alert notifier.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum MaxError {
    #[error("MAX rejected the bot token (check max.token)")]
    Unauthorized,
    #[error("MAX answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("MAX kept answering 429 too.many.requests")]
    RateLimited { retry_after: Option<Duration> },
    #[error("cannot reach MAX at {api_url}: {reason}")]
    Network { api_url: String, reason: String },
    #[error("unexpected answer from MAX to {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("MAX refused the request: {0}")]
    Refused(String),
    #[error("webhook secret missing or wrong")]
    BadSecret,
    #[error("webhook body is not a MAX update: {0}")]
    BadWebhook(String),
    #[error("invalid MAX settings: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl MaxError {
    /// The user stopped or blocked the bot: nothing to retry, nobody to tell.
    pub fn is_chat_denied(&self) -> bool {
        matches!(self, MaxError::Api { code, .. } if code == "chat.denied")
    }

    /// What the queue should do about it. A user who blocked the bot, a chat that is gone or
    /// a message MAX refuses will be refused again: permanent, not retried for a week.
    pub fn failure(&self) -> Failure {
        let message = format!("MAX: {self}");
        match self {
            MaxError::Unauthorized => Failure::auth(message).with_status(401),
            MaxError::Api { status, code, .. } => {
                Failure::from_status(&MaxQuirks, *status, Some(code), None, message)
            }
            MaxError::RateLimited { retry_after } => {
                Failure::from_status(&MaxQuirks, 429, None, *retry_after, message)
            }
            // An answer we could not read may still mean the message went out; a retry is
            // what the notice's idempotency key is for.
            MaxError::Network { .. } | MaxError::Decode { .. } | MaxError::Store(_) => {
                Failure::transient(message)
            }
            MaxError::Refused(_)
            | MaxError::BadSecret
            | MaxError::BadWebhook(_)
            | MaxError::Config(_) => Failure::permanent(message),
        }
    }
}

/// MAX answers 403 about the chat (`chat.denied`, a bot not in a group), not the token: its
/// refused token is a 401. So a 403 is the chat's verdict, not a credentials problem.
pub(super) struct MaxQuirks;

impl Quirks for MaxQuirks {
    fn classify(&self, status: Option<u16>, code: Option<&str>, _: &str) -> Option<Kind> {
        match (status, code) {
            // The upload is still being processed: the same message goes through shortly.
            (_, Some("attachment.not.ready")) => Some(Kind::Transient { retry_after: None }),
            (_, Some("chat.denied")) | (Some(403 | 404), _) => Some(Kind::Permanent),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// Pacing under MAX's limits; tests loosen it.
#[derive(Debug, Clone, Copy)]
pub struct MaxLimits {
    /// Minimum gap between two messages (or two callback answers) in one chat.
    pub per_chat_interval: Duration,
    pub overall_per_second: u32,
    /// First wait after a 429 (MAX sends no `Retry-After`); doubles per retry.
    pub retry_base: Duration,
    pub max_retries: u32,
}

impl Default for MaxLimits {
    fn default() -> Self {
        MaxLimits {
            // 2/s would be one every 500 ms, but then three sends can land within one second on
            // MAX's side once network jitter shifts them; 600 ms keeps a margin.
            per_chat_interval: Duration::from_millis(600),
            overall_per_second: 30,
            retry_base: Duration::from_secs(1),
            max_retries: 4,
        }
    }
}

/// The few MAX Bot API methods zapis uses.
#[derive(Clone)]
pub struct MaxClient {
    pub(super) http: reqwest::Client,
    pub(super) api_url: Url,
    pub(super) token: SecretString,
    pub(super) limits: MaxLimits,
    pub(super) overall: Arc<DefaultDirectRateLimiter>,
    pub(super) messages: Arc<DefaultKeyedRateLimiter<MaxTarget>>,
    pub(super) answers: Arc<DefaultKeyedRateLimiter<MaxTarget>>,
    /// Calls since the per-chat limiters last dropped idle chats.
    pub(super) since_prune: Arc<std::sync::atomic::AtomicU32>,
}

/// Webhook mode and the notice sender have no polling loop to forget idle chats after; every
/// this many calls the client does it itself.
pub(super) const PRUNE_EVERY: u32 = 1024;

pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl MaxClient {
    pub fn new(config: &MaxConfig) -> MaxClient {
        MaxClient::with_limits(config, MaxLimits::default())
    }

    pub fn with_limits(config: &MaxConfig, limits: MaxLimits) -> MaxClient {
        let per_chat = Quota::with_period(limits.per_chat_interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        let overall = Quota::per_second(
            NonZeroU32::new(limits.overall_per_second).unwrap_or(NonZeroU32::MIN),
        );
        MaxClient {
            http: http_client(config),
            api_url: config.api_url.clone(),
            token: config.token.clone(),
            limits,
            overall: Arc::new(RateLimiter::direct(overall)),
            messages: Arc::new(RateLimiter::keyed(per_chat)),
            answers: Arc::new(RateLimiter::keyed(per_chat)),
            since_prune: Arc::default(),
        }
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    pub(super) fn url(&self, path: &str) -> Result<Url, MaxError> {
        let base = self.api_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{path}")).map_err(|e| MaxError::Config(e.to_string()))
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T, MaxError> {
        let url = self.url(path)?;
        let mut auth = HeaderValue::from_str(self.token.expose_secret()).map_err(|_| {
            MaxError::Config("max.token has characters a header cannot carry".into())
        })?;
        auth.set_sensitive(true);
        let calls = self
            .since_prune
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if calls >= PRUNE_EVERY {
            self.since_prune
                .store(0, std::sync::atomic::Ordering::Relaxed);
            self.forget_idle_chats();
        }
        let mut attempt = 0;
        loop {
            self.overall.until_ready().await;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .query(query)
                .header(AUTHORIZATION, auth.clone())
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            // The token travels in a header, so reqwest's error text (which names the URL)
            // carries no secret.
            let network = |e: reqwest::Error| MaxError::Network {
                api_url: self.api_url.to_string(),
                reason: if e.is_timeout() {
                    "timed out".into()
                } else {
                    e.to_string()
                },
            };
            let response = request.send().await.map_err(network)?;
            let status = response.status();
            let retry_after = failure::retry_after(response.headers());
            let bytes = response.bytes().await.map_err(network)?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| MaxError::Decode {
                    path: path.to_string(),
                    reason: e.to_string(),
                });
            }
            let error =
                serde_json::from_slice::<ApiErrorBody>(&bytes).unwrap_or_else(|_| ApiErrorBody {
                    code: format!("http.{}", status.as_u16()),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                });
            match status.as_u16() {
                429 if attempt < self.limits.max_retries => {
                    let wait = retry_after
                        .unwrap_or_else(|| self.limits.retry_base * 2u32.pow(attempt.min(6)));
                    tracing::info!(
                        path,
                        wait_ms = wait.as_millis() as u64,
                        "MAX rate limit; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                429 => return Err(MaxError::RateLimited { retry_after }),
                401 => return Err(MaxError::Unauthorized),
                status => {
                    return Err(MaxError::Api {
                        status,
                        code: error.code,
                        message: error.message,
                    });
                }
            }
        }
    }

    /// `GET /me`: who the token belongs to.
    pub async fn me(&self) -> Result<BotInfo, MaxError> {
        self.call(Method::GET, "me", &[], None, CALL_TIMEOUT).await
    }

    /// `GET /chats/{chatId}`: a chat the bot is a member of.
    pub async fn chat(&self, chat_id: i64) -> Result<MaxChat, MaxError> {
        self.call(
            Method::GET,
            &format!("chats/{chat_id}"),
            &[],
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /updates`, blocking up to `timeout` when nothing is waiting. Passing `marker`
    /// commits everything before it on MAX's side.
    pub async fn updates(
        &self,
        marker: Option<i64>,
        limit: u32,
        timeout: Duration,
        types: &[&str],
    ) -> Result<UpdateList, MaxError> {
        let mut query = vec![
            ("limit", limit.clamp(1, 1000).to_string()),
            ("timeout", timeout.as_secs().min(90).to_string()),
        ];
        if let Some(marker) = marker {
            query.push(("marker", marker.to_string()));
        }
        if !types.is_empty() {
            query.push(("types", types.join(",")));
        }
        self.call(
            Method::GET,
            "updates",
            &query,
            None,
            timeout + Duration::from_secs(10),
        )
        .await
    }

    /// `POST /messages`; returns the new message's `mid`.
    pub async fn send(&self, to: MaxTarget, body: &Value) -> Result<String, MaxError> {
        self.messages.until_key_ready(&to).await;
        let result: SendMessageResult = self
            .call(
                Method::POST,
                "messages",
                &[to.query()],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(result.message.body.mid)
    }

    /// `PUT /messages?message_id=` with a whole new body.
    pub async fn edit(&self, to: MaxTarget, mid: &str, body: &Value) -> Result<(), MaxError> {
        // Edits change what the chat shows as much as sends do, so they share the pacing.
        self.messages.until_key_ready(&to).await;
        let result: SimpleResult = self
            .call(
                Method::PUT,
                "messages",
                &[("message_id", mid.to_string())],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// `POST /answers?callback_id=`: stops the client's spinner. `body` is a `CallbackAnswer`.
    pub async fn answer(
        &self,
        chat: MaxTarget,
        callback_id: &str,
        body: &Value,
    ) -> Result<(), MaxError> {
        self.answers.until_key_ready(&chat).await;
        let result: SimpleResult = self
            .call(
                Method::POST,
                "answers",
                &[("callback_id", callback_id.to_string())],
                Some(body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// `POST /subscriptions`: MAX will post updates to `url` (HTTPS, port 443).
    pub async fn subscribe(
        &self,
        url: &Url,
        secret: Option<&SecretString>,
        types: &[&str],
    ) -> Result<(), MaxError> {
        let mut body = json!({"url": url.as_str(), "update_types": types});
        if let Some(secret) = secret {
            body["secret"] = json!(secret.expose_secret());
        }
        let result: SimpleResult = self
            .call(
                Method::POST,
                "subscriptions",
                &[],
                Some(&body),
                CALL_TIMEOUT,
            )
            .await?;
        simple(result)
    }

    /// Drops pacing state of chats idle long enough to be within their limit again, so the
    /// per-chat limiters do not grow with every user ever seen.
    pub fn forget_idle_chats(&self) {
        self.messages.retain_recent();
        self.answers.retain_recent();
    }

    /// Sends a reply (split to MAX's limit) with its buttons under the last part.
    pub async fn send_reply(
        &self,
        to: MaxTarget,
        reply: &Reply,
        lang: Lang,
    ) -> Result<(), MaxError> {
        let parts = split_text(&reply.text);
        let last = parts.len().saturating_sub(1);
        let mut kb = keyboard(reply, lang);
        for (i, part) in parts.into_iter().enumerate() {
            let mut body = json!({"text": part});
            if i == last
                && let Some(kb) = kb.take()
            {
                body["attachments"] = json!([kb]);
            }
            self.send(to, &body).await?;
        }
        Ok(())
    }

    /// Sends a plain text (split to MAX's limit) to a user or chat.
    pub async fn send_text(&self, to: MaxTarget, text: &str) -> Result<(), MaxError> {
        for part in split_text(text) {
            self.send(to, &json!({"text": part})).await?;
        }
        Ok(())
    }
}

/// No client-wide timeout (long polls need longer than other calls); the extra roots of
/// `max.ca_cert` trusted besides the built-in ones. Config validation already read the file, so
/// a failure here is logged rather than fatal.
pub(super) fn http_client(config: &MaxConfig) -> reqwest::Client {
    let mut builder = http::builder(None);
    if let Some(path) = &config.ca_cert {
        match std::fs::read(path).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
            Ok(Ok(certs)) => {
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "max.ca_cert is not PEM")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read max.ca_cert")
            }
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build the MAX HTTP client; using defaults");
        reqwest::Client::new()
    })
}

pub(super) fn simple(result: SimpleResult) -> Result<(), MaxError> {
    if result.success {
        Ok(())
    } else {
        Err(MaxError::Refused(result.message.unwrap_or_default()))
    }
}

/// Posts alerts to a MAX admin chat or user, for the sync engine's alert sink.
#[derive(Clone)]
pub struct MaxNotifier {
    pub(super) client: MaxClient,
    pub(super) to: MaxTarget,
}

impl MaxNotifier {
    pub fn new(config: &MaxConfig, to: MaxTarget) -> MaxNotifier {
        MaxNotifier {
            client: MaxClient::new(config),
            to,
        }
    }

    pub async fn send_text(&self, text: &str) -> Result<(), MaxError> {
        self.client.send_text(self.to, text).await
    }
}
