//! What 1C exchanges with us: the catalogue, offers and documents its CommerceML files carry,
//! which bookings it has taken as documents, its exchange sessions and the stock watch's
//! low/normal state per item.

use crate::domain::BusinessId;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::{Booking, BookingId, BookingStatus};

/// A goods or services line of 1C's catalogue (`Каталог/Товары/Товар`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogItem {
    pub id: String,
    pub name: String,
    pub article: Option<String>,
    pub unit: Option<String>,
    pub groups: Vec<String>,
}

/// A priced offer with its stock (`ПакетПредложений/Предложения/Предложение`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub quantity_milli: Option<i64>,
    pub warehouses: BTreeMap<String, i64>,
}

/// One of 1C's documents sent back through `type=sale&mode=file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingDocument {
    pub id: String,
    pub number: Option<String>,
    pub amount: Option<String>,
    pub paid: bool,
    pub cancelled: bool,
    pub status: Option<String>,
}

/// Everything one file carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub catalog: Vec<CatalogItem>,
    pub offers: Vec<Offer>,
    pub documents: Vec<IncomingDocument>,
}

/// A stored offer, for `zapis onec stock` and the low-stock alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLine {
    pub id: String,
    pub name: String,
    pub price_minor: Option<i64>,
    pub quantity_milli: Option<i64>,
}

/// A document 1C sent back, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIncoming {
    pub doc_id: String,
    /// The booking the document names, when it names one of ours.
    pub booking_id: Option<BookingId>,
    pub paid: bool,
    pub status: Option<String>,
}

impl Store {
    /// Stores a parsed file in one transaction: either all of it is stored, or none.
    pub async fn apply_onec_package(
        &self,
        business_id: &BusinessId,
        pkg: &Package,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let at = now.timestamp_millis();
        for item in &pkg.catalog {
            sqlx::query(
                "INSERT INTO onec_catalog (business_id, item_id, name, article, unit, groups, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (business_id, item_id) DO UPDATE SET name = excluded.name, \
                 article = excluded.article, unit = excluded.unit, groups = excluded.groups, \
                 updated_at = excluded.updated_at",
            )
            .bind(business_id.as_str())
            .bind(&item.id)
            .bind(&item.name)
            .bind(item.article.clone())
            .bind(item.unit.clone())
            .bind(item.groups.join(","))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        for offer in &pkg.offers {
            let warehouses = serde_json::to_string(&offer.warehouses).unwrap_or_default();
            sqlx::query(
                "INSERT INTO onec_offers (business_id, offer_id, name, price_minor, currency, \
                 quantity_milli, warehouses, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (business_id, offer_id) DO UPDATE SET name = excluded.name, \
                 price_minor = COALESCE(excluded.price_minor, onec_offers.price_minor), \
                 currency = COALESCE(excluded.currency, onec_offers.currency), \
                 quantity_milli = COALESCE(excluded.quantity_milli, onec_offers.quantity_milli), \
                 warehouses = excluded.warehouses, updated_at = excluded.updated_at",
            )
            .bind(business_id.as_str())
            .bind(&offer.id)
            .bind(&offer.name)
            .bind(offer.price_minor)
            .bind(offer.currency.clone())
            .bind(offer.quantity_milli)
            .bind(warehouses)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        for d in &pkg.documents {
            let booking: Option<String> =
                sqlx::query_scalar("SELECT id FROM bookings WHERE id = $1 AND business_id = $2")
                    .bind(&d.id)
                    .bind(business_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let status = if d.cancelled {
                Some("cancelled".to_string())
            } else {
                d.status.clone()
            };
            sqlx::query(
                "INSERT INTO onec_incoming (business_id, doc_id, number, booking_id, paid, status, \
                 amount, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (business_id, doc_id) DO UPDATE SET number = excluded.number, \
                 booking_id = excluded.booking_id, paid = excluded.paid, status = excluded.status, \
                 amount = excluded.amount, received_at = excluded.received_at",
            )
            .bind(business_id.as_str())
            .bind(&d.id)
            .bind(d.number.clone())
            .bind(booking)
            .bind(i64::from(d.paid))
            .bind(status)
            .bind(d.amount.clone())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn onec_stock(&self, business_id: &BusinessId) -> Result<Vec<StockLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT offer_id, name, price_minor, quantity_milli FROM onec_offers \
             WHERE business_id = $1 ORDER BY name, offer_id",
        )
        .bind(business_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StockLine {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    price_minor: r.try_get(2)?,
                    quantity_milli: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub async fn onec_incoming(
        &self,
        business_id: &BusinessId,
    ) -> Result<Vec<StoredIncoming>, StoreError> {
        let rows = sqlx::query(
            "SELECT doc_id, booking_id, paid, status FROM onec_incoming WHERE business_id = $1 \
             ORDER BY doc_id",
        )
        .bind(business_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredIncoming {
                    doc_id: r.try_get(0)?,
                    booking_id: r
                        .try_get::<Option<String>, _>(1)?
                        .map(|id| super::parse_booking_id(&id))
                        .transpose()?,
                    paid: r.try_get::<i64, _>(2)? != 0,
                    status: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn onec_catalog_count(&self, business_id: &BusinessId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM onec_catalog WHERE business_id = $1")
                .bind(business_id.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The bookings 1C has not taken in their current state: new ones and those whose status
    /// changed since. Marks them as handed out at `now`; `mode=success` then confirms them.
    pub async fn onec_pending_for_query(
        &self,
        business_id: &BusinessId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Booking>, StoreError> {
        let bookings = self.bookings(business_id).await?;
        let mut tx = self.begin().await?;
        let mut out = Vec::new();
        for b in bookings {
            if !matches!(
                b.status,
                BookingStatus::Booked
                    | BookingStatus::Visited
                    | BookingStatus::CancelledByClient
                    | BookingStatus::CancelledByBusiness
            ) {
                continue;
            }
            let delivered: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT delivered_at FROM onec_documents \
                 WHERE business_id = $1 AND booking_id = $2 AND status = $3",
            )
            .bind(business_id.as_str())
            .bind(b.id.as_str())
            .bind(b.status.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if matches!(delivered, Some(Some(_))) {
                continue;
            }
            sqlx::query(
                "INSERT INTO onec_documents (business_id, booking_id, status, queried_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (business_id, booking_id, status) \
                 DO UPDATE SET queried_at = excluded.queried_at",
            )
            .bind(business_id.as_str())
            .bind(b.id.as_str())
            .bind(b.status.as_str())
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
            out.push(b);
        }
        tx.commit().await?;
        out.reverse();
        Ok(out)
    }

    /// `mode=success`: everything handed out by the last `query` has been loaded by 1C.
    pub async fn onec_mark_delivered(
        &self,
        business_id: &BusinessId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE onec_documents SET delivered_at = $1 \
             WHERE business_id = $2 AND delivered_at IS NULL AND queried_at <= $1",
        )
        .bind(now.timestamp_millis())
        .bind(business_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Starts an exchange session (`created_at` in unix milliseconds).
    pub async fn onec_start_session(
        &self,
        cookie: &str,
        business_id: &BusinessId,
        created_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO onec_sessions (cookie, business_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(cookie)
        .bind(business_id.as_str())
        .bind(created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the sessions started before `before` (unix milliseconds).
    pub async fn onec_drop_sessions_before(&self, before: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM onec_sessions WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// When the session `cookie` of `business_id` started (unix milliseconds), if it exists.
    pub async fn onec_session_started(
        &self,
        cookie: &str,
        business_id: &BusinessId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT created_at FROM onec_sessions WHERE cookie = $1 AND business_id = $2",
        )
        .bind(cookie)
        .bind(business_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The items the stock watch has seen for `business_id`.
    pub async fn onec_watched_items(
        &self,
        business_id: &BusinessId,
    ) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT item FROM onec_stock_watch WHERE business_id = $1")
                .bind(business_id.as_str())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Flips the item's low/normal state only when it changes; true when this call made the
    /// change, so concurrent passes alert once.
    pub async fn onec_set_stock_low(
        &self,
        business_id: &BusinessId,
        item: &str,
        low: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO onec_stock_watch (business_id, item, low, changed_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (business_id, item) DO UPDATE SET low = excluded.low, \
             changed_at = excluded.changed_at WHERE onec_stock_watch.low <> excluded.low",
        )
        .bind(business_id.as_str())
        .bind(item)
        .bind(i64::from(low))
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }
}
