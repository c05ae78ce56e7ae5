//! Tracked deep links (a short token standing for a full UTM set) and the map from our
//! entities to their ids in external systems.

use crate::domain::{BookingId, BusinessId, RecordId, System};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, to_millis};
use crate::domain::Utm;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedLink {
    pub token: String,
    pub name: String,
    pub utm: Utm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStats {
    pub link: TrackedLink,
    pub bookings: i64,
}

impl TrackedLink {
    /// A fresh token: short enough for a deep link's 64-character start payload, random
    /// enough not to be guessed.
    pub fn new_token() -> String {
        format!("l_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
    }
}

impl Store {
    pub async fn create_tracked_link(
        &self,
        business_id: &BusinessId,
        link: &TrackedLink,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let utm = serde_json::to_string(&link.utm)
            .map_err(|e| StoreError::Corrupt(format!("utm does not serialise: {e}")))?;
        let result = sqlx::query(
            "INSERT INTO tracked_links (business_id, token, name, utm, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(business_id.as_str())
        .bind(&link.token)
        .bind(&link.name)
        .bind(utm)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("a link named {:?}", link.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tracked_link(
        &self,
        business_id: &BusinessId,
        token: &str,
    ) -> Result<Option<TrackedLink>, StoreError> {
        let row = sqlx::query(
            "SELECT token, name, utm FROM tracked_links WHERE business_id = $1 AND token = $2",
        )
        .bind(business_id.as_str())
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| link_from_row(&r)).transpose()
    }

    /// Every tracked link with the number of bookings that arrived through it.
    pub async fn tracked_links(
        &self,
        business_id: &BusinessId,
    ) -> Result<Vec<LinkStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.token, l.name, l.utm, \
               (SELECT COUNT(*) FROM bookings b \
                 WHERE b.business_id = l.business_id AND b.source_payload = l.token) AS n \
             FROM tracked_links l WHERE l.business_id = $1 ORDER BY l.created_at, l.name",
        )
        .bind(business_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LinkStats {
                    link: link_from_row(r)?,
                    bookings: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// Remembers that our `entity`/`entity_id` is `external_id` in `system`. The entity id
    /// stays text: one column holds booking ids, client ids and the lead keys of leads that
    /// are no booking's, and readers that want a booking parse it.
    pub async fn put_link(
        &self,
        business_id: &BusinessId,
        entity: &str,
        entity_id: &str,
        system: System,
        external_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO links (business_id, entity, entity_id, system, external_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (business_id, entity, entity_id, system) \
             DO UPDATE SET external_id = excluded.external_id",
        )
        .bind(business_id.as_str())
        .bind(entity)
        .bind(entity_id)
        .bind(system.as_str())
        .bind(external_id)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn external_id(
        &self,
        business_id: &BusinessId,
        entity: &str,
        entity_id: &str,
        system: System,
    ) -> Result<Option<String>, StoreError> {
        self.link_lookup(
            "SELECT external_id FROM links \
             WHERE business_id = $1 AND entity = $2 AND entity_id = $3 AND system = $4",
            [business_id, entity, entity_id, system.as_str()],
        )
        .await
    }

    /// The reverse look-up: which of our entities is `external_id` in `system`.
    pub async fn entity_for_external(
        &self,
        business_id: &BusinessId,
        entity: &str,
        system: System,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.link_lookup(
            "SELECT entity_id FROM links \
             WHERE business_id = $1 AND entity = $2 AND system = $3 AND external_id = $4",
            [business_id, entity, system.as_str(), external_id],
        )
        .await
    }
}

impl Store {
    /// Like [`Store::entity_for_external`] when only the start of the external id is known
    /// (YClients webhooks name the record id, our links hold `record_id:hash`).
    pub async fn entity_for_external_prefix(
        &self,
        business_id: &BusinessId,
        entity: &str,
        system: System,
        prefix: &str,
    ) -> Result<Option<String>, StoreError> {
        let pattern = format!("{}%", prefix.replace('%', "").replace('_', "\\_"));
        self.link_lookup(
            "SELECT entity_id FROM links WHERE business_id = $1 AND entity = $2 AND system = $3 \
             AND external_id LIKE $4 ESCAPE '\\' LIMIT 1",
            [business_id, entity, system.as_str(), &pattern],
        )
        .await
    }

    /// One column of one link, found by `sql` with the four `params` as `$1`…`$4`.
    async fn link_lookup(
        &self,
        sql: &'static str,
        params: [&str; 4],
    ) -> Result<Option<String>, StoreError> {
        let mut query = sqlx::query_scalar(sql);
        for param in params {
            query = query.bind(param);
        }
        Ok(query.fetch_optional(&self.pool).await?)
    }
}

fn link_from_row(row: &sqlx::any::AnyRow) -> Result<TrackedLink, StoreError> {
    let utm: String = row.try_get("utm")?;
    Ok(TrackedLink {
        token: row.try_get("token")?,
        name: row.try_get("name")?,
        utm: serde_json::from_str(&utm)
            .map_err(|e| StoreError::Corrupt(format!("tracked link utm: {e}")))?,
    })
}

/// Served by `bookings_by_start`, then the `links` key. Parameters: business, system, now.
pub(crate) const UPCOMING_LINKED_SQL: &str = "SELECT b.id, l.external_id FROM bookings b \
     JOIN links l ON l.business_id = b.business_id AND l.entity = 'booking' \
          AND l.entity_id = b.id AND l.system = $2 \
     WHERE b.business_id = $1 AND b.start_at >= $3 AND b.status IN ('requested', 'booked') \
     ORDER BY b.start_at";

impl Store {
    /// `(booking id, external id)` of active bookings from `now` on that are linked in `system`:
    /// what the CRM reconciler re-reads.
    pub async fn upcoming_linked(
        &self,
        business_id: &BusinessId,
        system: System,
        now: DateTime<Utc>,
    ) -> Result<Vec<(BookingId, String)>, StoreError> {
        let rows = sqlx::query(UPCOMING_LINKED_SQL)
            .bind(business_id.as_str())
            .bind(system.as_str())
            .bind(to_millis(now))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    crate::store::booking_id_named(r, "id")?,
                    r.try_get("external_id")?,
                ))
            })
            .collect()
    }
}

/// Takes the link of booking `booking_id` to `external_id` in `system` inside the caller's
/// transaction, unless one is there already: 1 when this call took it, 0 when it was taken.
pub async fn claim_booking_link_in(
    conn: &mut AnyConnection,
    business_id: &BusinessId,
    booking_id: &BookingId,
    system: System,
    external_id: &RecordId,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO links (business_id, entity, entity_id, system, external_id, created_at) \
         VALUES ($1, 'booking', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(business_id.as_str())
    .bind(booking_id.as_str())
    .bind(system.as_str())
    .bind(external_id.as_str())
    .bind(now.timestamp_millis())
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::testing;

    #[tokio::test]
    async fn tracked_links_resolve_and_names_are_unique() {
        for store in testing::all().await {
            let now = Utc::now();
            let link = TrackedLink {
                token: "l_ab12".into(),
                name: "spring".into(),
                utm: Utm {
                    source: Some("yandex".into()),
                    medium: Some("cpc".into()),
                    campaign: Some("spring".into()),
                    ..Utm::default()
                },
            };
            store
                .create_tracked_link(&bid("b"), &link, now)
                .await
                .unwrap();
            assert_eq!(
                store.tracked_link(&bid("b"), "l_ab12").await.unwrap(),
                Some(link.clone())
            );
            assert_eq!(
                store.tracked_link(&bid("other"), "l_ab12").await.unwrap(),
                None
            );
            let again = TrackedLink {
                token: "l_cd34".into(),
                ..link.clone()
            };
            assert!(matches!(
                store.create_tracked_link(&bid("b"), &again, now).await,
                Err(StoreError::Conflict(_))
            ));
            let stats = store.tracked_links(&bid("b")).await.unwrap();
            assert_eq!(stats, vec![LinkStats { link, bookings: 0 }]);
        }
    }

    #[tokio::test]
    async fn links_map_both_ways_and_are_replaced() {
        for store in testing::all().await {
            let now = Utc::now();
            store
                .put_link(&bid("b"), "booking", "bk1", System::Yclients, "100", now)
                .await
                .unwrap();
            store
                .put_link(&bid("b"), "booking", "bk1", System::Yclients, "101", now)
                .await
                .unwrap();
            assert_eq!(
                store
                    .external_id(&bid("b"), "booking", "bk1", System::Yclients)
                    .await
                    .unwrap()
                    .as_deref(),
                Some("101")
            );
            assert_eq!(
                store
                    .entity_for_external(&bid("b"), "booking", System::Yclients, "101")
                    .await
                    .unwrap(),
                Some("bk1".into())
            );
            assert_eq!(
                store
                    .external_id(&bid("b"), "booking", "bk1", System::AmoCrm)
                    .await
                    .unwrap(),
                None
            );
        }
    }
}
