//! `http`: the generic outbound connector. It POSTs a job's payload as JSON to a configured
//! URL with an `Idempotency-Key` header and reads `{"id": ...}` back. When an earlier attempt
//! may have reached the target it first asks `GET {url}?key=...` and links the existing
//! object instead of creating it again — the search-before-create every connector does.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::sync::jobs::Job;
use crate::sync::retry::DeliveryError;
use crate::sync::worker::{Delivered, JobContext, JobHandler};

#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    url: url::Url,
    token: Option<SecretString>,
}

#[derive(Deserialize)]
struct Created {
    id: serde_json::Value,
}

impl HttpTarget {
    /// `client` carries the timeouts; `token`, when set, goes out as a bearer token.
    pub fn new(client: reqwest::Client, url: url::Url, token: Option<SecretString>) -> HttpTarget {
        HttpTarget { client, url, token }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => request.bearer_auth(t.expose_secret()),
            None => request,
        }
    }

    /// The id of the object created for `key`, if the target has one.
    async fn find(&self, key: &str) -> Result<Option<String>, DeliveryError> {
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("key", key);
        let response = self
            .authorize(self.client.get(url))
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(&e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_id(response).await.map(Some)
    }
}

async fn read_id(response: reqwest::Response) -> Result<String, DeliveryError> {
    let status = response.status();
    let retry_after = crate::connectors::failure::retry_after(response.headers());
    let body = response
        .text()
        .await
        .map_err(|e| DeliveryError::from_reqwest(&e))?;
    if !status.is_success() {
        return Err(DeliveryError::from_status(
            status.as_u16(),
            retry_after,
            &body,
        ));
    }
    let created: Created = serde_json::from_str(&body).map_err(|e| {
        // A 2xx we cannot read may still have created the object: retry, and the retry
        // searches first.
        DeliveryError::Transient {
            message: format!("unreadable success answer: {e}"),
            retry_after: None,
            http_status: Some(status.as_u16()),
        }
    })?;
    Ok(match created.id {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

#[async_trait]
impl JobHandler for HttpTarget {
    async fn handle(&self, job: &Job, _ctx: &JobContext<'_>) -> Result<Delivered, DeliveryError> {
        let key = &job.idempotency_key;
        if job.maybe_delivered_before()
            && let Some(id) = self.find(key).await?
        {
            tracing::info!(external_id = %id, "found the object an earlier attempt created; linking");
            return Ok(Delivered::linked(&job.operation, key, &id));
        }
        let response = self
            .authorize(self.client.post(self.url.clone()))
            .header("Idempotency-Key", key.as_str())
            .json(&job.payload)
            .send()
            .await
            .map_err(|e| DeliveryError::from_reqwest(&e))?;
        let id = read_id(response).await?;
        Ok(Delivered::linked(&job.operation, key, &id))
    }
}
