//! Per business and system: is it up, degraded or down, and has the outage been alerted?
//! Outages live in the store (not in memory) so several processes, and a restarted one,
//! send one alert per outage between them.

use crate::domain::{BusinessId, System};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::{Store, StoreError, from_millis, to_millis};
use crate::sync::alerts::{Alert, AlertKind};

/// How far back `/health/ready` and the console count attempts for `delivered`/`failed` and
/// `degraded`.
pub const READY_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Recent attempts all succeeded (or none were made).
    Up,
    /// Some recent attempts failed, but deliveries are getting through.
    Degraded,
    /// Every attempt since `failing_since` has failed.
    Down,
}

/// What an outage is about. A system being unreachable, its refusing our credentials and its
/// account being unpaid open and close apart, so each is a row of its own, keyed by the system's
/// name with `#auth` or `#payment` after it (the keys rows already hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outage {
    /// Deliveries fail for the system's sake: unreachable, erring, refusing for a while.
    Down(System),
    /// The system refused our credentials even after a refresh.
    Auth(System),
    /// The system's account is not paid.
    Payment(System),
}

impl Outage {
    pub fn system(self) -> System {
        match self {
            Outage::Down(s) | Outage::Auth(s) | Outage::Payment(s) => s,
        }
    }

    /// The `sync_outages.system` value.
    pub fn key(self) -> String {
        match self {
            Outage::Down(s) => s.as_str().to_string(),
            Outage::Auth(s) => format!("{s}#auth"),
            Outage::Payment(s) => format!("{s}#payment"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemHealth {
    pub business_id: BusinessId,
    pub system: System,
    pub health: Health,
    pub failing_since: Option<DateTime<Utc>>,
}

/// Records a failed attempt. Returns the Down alert to send when this failure pushes the
/// outage past `alert_after` and nobody has alerted it yet; the conditional UPDATE makes
/// exactly one caller win even across processes.
pub async fn record_failure(
    store: &Store,
    business_id: &BusinessId,
    outage: Outage,
    error: &str,
    alert_after: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, StoreError> {
    let now_ms = to_millis(now);
    let key = outage.key();
    sqlx::query(
        "INSERT INTO sync_outages (business_id, system, failing_since, last_error) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (business_id, system) \
         DO UPDATE SET last_error = excluded.last_error",
    )
    .bind(business_id.as_str())
    .bind(&key)
    .bind(now_ms)
    .bind(error)
    .execute(store.pool())
    .await?;
    let row = sqlx::query(
        "UPDATE sync_outages SET alerted_at = $1 \
         WHERE business_id = $2 AND system = $3 AND alerted_at IS NULL AND failing_since <= $4 \
         RETURNING failing_since",
    )
    .bind(now_ms)
    .bind(business_id.as_str())
    .bind(&key)
    .bind(now_ms - alert_after.as_millis() as i64)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(Alert {
            kind: AlertKind::Down,
            business_id: business_id.clone(),
            system: outage.system(),
            since: from_millis(r.try_get("failing_since")?)?,
            at: now,
            last_error: Some(error.into()),
        })
    })
    .transpose()
}

/// Records a successful delivery, ending any outage. Returns the Recovered alert when the
/// outage had been alerted (DELETE … RETURNING: only one process sees the row).
pub async fn record_success(
    store: &Store,
    business_id: &BusinessId,
    outage: Outage,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, StoreError> {
    let row = sqlx::query(
        "DELETE FROM sync_outages WHERE business_id = $1 AND system = $2 \
         RETURNING failing_since, alerted_at",
    )
    .bind(business_id.as_str())
    .bind(outage.key())
    .fetch_optional(store.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    if r.try_get::<Option<i64>, _>("alerted_at")?.is_none() {
        return Ok(None);
    }
    Ok(Some(Alert {
        kind: AlertKind::Recovered,
        business_id: business_id.clone(),
        system: outage.system(),
        since: from_millis(r.try_get("failing_since")?)?,
        at: now,
        last_error: None,
    }))
}

/// The outage keys (`amocrm`, `amocrm#auth`, …) open for each of `businesses`. A worker reads
/// these before recording successes: outages are rare, so a batch that delivered usually
/// learns with one read that there is nothing to close, instead of trying a DELETE per key.
pub async fn open_outages(
    store: &Store,
    businesses: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    if businesses.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=businesses.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT business_id, system FROM sync_outages WHERE business_id IN ({})",
        placeholders.join(", ")
    );
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
    for b in businesses {
        q = q.bind(*b);
    }
    Ok(q.fetch_all(store.pool()).await?)
}

/// Health of every business/system with attempts in `window`: Down while an outage is open
/// and nothing got through in the window, Degraded when some attempts failed, else Up.
pub async fn system_health(
    store: &Store,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<SystemHealth>, StoreError> {
    let since = to_millis(now) - window.as_millis() as i64;
    let rows = sqlx::query(
        "SELECT j.business_id, j.system, \
           SUM(CASE WHEN j.outcome = 'delivered' THEN 0 ELSE 1 END) AS failures, \
           SUM(CASE WHEN j.outcome = 'delivered' THEN 1 ELSE 0 END) AS successes, \
           (SELECT o.failing_since FROM sync_outages o \
             WHERE o.business_id = j.business_id AND o.system = j.system) AS failing_since \
         FROM sync_journal j WHERE j.at >= $1 GROUP BY j.business_id, j.system \
         ORDER BY j.business_id, j.system",
    )
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let failures: i64 = r.try_get("failures")?;
            let failing_since = r
                .try_get::<Option<i64>, _>("failing_since")?
                .map(from_millis)
                .transpose()?;
            let successes: i64 = r.try_get("successes")?;
            let health = match (failing_since, failures, successes) {
                (Some(_), _, 0) => Health::Down,
                (_, 0, _) => Health::Up,
                _ => Health::Degraded,
            };
            Ok(SystemHealth {
                business_id: crate::store::business_id_in(r)?,
                system: crate::store::system_in(r)?,
                health,
                failing_since,
            })
        })
        .collect()
}

/// One configured system's state, for `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IntegrationHealth {
    pub system: System,
    pub state: Health,
    /// When the open outage began (`down` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The open outage's latest error (`down` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Attempts delivered within the window.
    pub delivered: i64,
    /// Attempts within the window that failed for the system's sake (unreachable, refused
    /// credentials, unpaid account); a payload the system rejects says nothing of its health.
    pub failed: i64,
}

/// When each system of `business_id` last confirmed a delivery.
pub async fn last_delivered(
    store: &Store,
    business_id: &BusinessId,
) -> Result<Vec<(System, DateTime<Utc>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT system, MAX(at) AS at FROM sync_journal \
         WHERE business_id = $1 AND outcome = 'delivered' GROUP BY system",
    )
    .bind(business_id.as_str())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((crate::store::system_in(r)?, from_millis(r.try_get("at")?)?)))
        .collect()
}

/// The state of each of `systems` for `business_id`: Down while an outage is open (every
/// attempt since it began has failed: a delivery closes it), including a refused credential or
/// an unpaid account; Degraded when some attempts in `window` failed but none is failing now;
/// else Up.
pub async fn integration_health(
    store: &Store,
    business_id: &BusinessId,
    systems: &[System],
    window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<IntegrationHealth>, StoreError> {
    let outages = sqlx::query(
        "SELECT system, failing_since, last_error FROM sync_outages WHERE business_id = $1",
    )
    .bind(business_id.as_str())
    .fetch_all(store.pool())
    .await?;
    let since = to_millis(now) - window.as_millis() as i64;
    let attempts = sqlx::query(
        "SELECT system, \
           SUM(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END) AS delivered, \
           SUM(CASE WHEN outcome IN ('transient', 'auth', 'payment_required') THEN 1 ELSE 0 END) \
             AS failed \
         FROM sync_journal WHERE business_id = $1 AND at >= $2 GROUP BY system",
    )
    .bind(business_id.as_str())
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(systems.len());
    for system in systems {
        let mut delivered = 0;
        let mut failed = 0;
        for r in &attempts {
            if r.try_get::<String, _>("system")? == system.as_str() {
                delivered = r.try_get::<Option<i64>, _>("delivered")?.unwrap_or(0);
                failed = r.try_get::<Option<i64>, _>("failed")?.unwrap_or(0);
            }
        }
        // `amocrm#auth` and `amocrm#payment` are amoCRM's too.
        let mut open: Option<(DateTime<Utc>, Option<String>)> = None;
        for r in &outages {
            let key: String = r.try_get("system")?;
            let base = key.split_once('#').map_or(key.as_str(), |(base, _)| base);
            if base != system.as_str() {
                continue;
            }
            let began = from_millis(r.try_get("failing_since")?)?;
            let error: Option<String> = r.try_get("last_error")?;
            open = match open {
                Some((first, known)) if first <= began => Some((first, known.or(error))),
                Some((_, known)) => Some((began, error.or(known))),
                None => Some((began, error)),
            };
        }
        let state = match (&open, failed) {
            (Some(_), _) => Health::Down,
            (None, 0) => Health::Up,
            (None, _) => Health::Degraded,
        };
        let (since, last_error) = open.map_or((None, None), |(s, e)| (Some(s), e));
        out.push(IntegrationHealth {
            system: *system,
            state,
            since,
            last_error,
            delivered,
            failed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows already hold these keys: an open outage written before must still be closed.
    #[test]
    fn outage_keys_are_the_stored_ones() {
        assert_eq!(Outage::Down(System::AmoCrm).key(), "amocrm");
        assert_eq!(Outage::Auth(System::AmoCrm).key(), "amocrm#auth");
        assert_eq!(Outage::Payment(System::Yclients).key(), "yclients#payment");
        assert_eq!(Outage::Payment(System::Yclients).system(), System::Yclients);
    }
}
