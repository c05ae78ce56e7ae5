//! CommerceML 2 files: reading what 1C sends (catalogue, offers with prices and stock, its order
//! documents back) and writing our bookings as documents for 1C to load.
//!
//! Files arrive as UTF-8 with a BOM or in whatever the XML declaration names (old releases and
//! Bitrix-style exchanges use windows-1251). Parsing is streaming: a catalogue can be large.

mod decode;
mod parse;
#[cfg(test)]
mod tests;
mod write;

use crate::domain::BusinessId;
use chrono::{DateTime, Utc};

use crate::domain::Booking;
use crate::store::{Store, StoreError};

pub use crate::store::onec::{
    CatalogItem, IncomingDocument, Offer, Package, StockLine, StoredIncoming,
};
pub use decode::{MAX_DEPTH, MAX_EVENT, decode};
pub use parse::{parse, parse_file, parse_reader};
pub use write::{DocumentStyle, contractor_id, write_documents};

#[derive(Debug, thiserror::Error)]
pub enum CmlError {
    /// The file cannot be read: 1C shows this text to its user.
    #[error("{0}")]
    Malformed(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Applies a parsed file in one transaction: either all of it is stored, or none.
pub async fn apply(
    store: &Store,
    business_id: &BusinessId,
    pkg: &Package,
    now: DateTime<Utc>,
) -> Result<(), CmlError> {
    Ok(store.apply_onec_package(business_id, pkg, now).await?)
}

pub async fn stock(store: &Store, business_id: &BusinessId) -> Result<Vec<StockLine>, CmlError> {
    Ok(store.onec_stock(business_id).await?)
}

pub async fn incoming(
    store: &Store,
    business_id: &BusinessId,
) -> Result<Vec<StoredIncoming>, CmlError> {
    Ok(store.onec_incoming(business_id).await?)
}

pub async fn catalog_count(store: &Store, business_id: &BusinessId) -> Result<i64, CmlError> {
    Ok(store.onec_catalog_count(business_id).await?)
}

/// The bookings 1C has not taken in their current state: new ones and those whose status
/// changed since. Marks them as handed out at `now`; `mode=success` then confirms them.
pub async fn pending_for_query(
    store: &Store,
    business_id: &BusinessId,
    now: DateTime<Utc>,
) -> Result<Vec<Booking>, CmlError> {
    Ok(store.onec_pending_for_query(business_id, now).await?)
}

/// `mode=success`: everything handed out by the last `query` has been loaded by 1C.
pub async fn mark_delivered(
    store: &Store,
    business_id: &BusinessId,
    now: DateTime<Utc>,
) -> Result<u64, CmlError> {
    Ok(store.onec_mark_delivered(business_id, now).await?)
}
