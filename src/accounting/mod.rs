//! The business's accounting system (1C): the client base, invoices and sales documents, and
//! stock. Two mechanisms 1C offers without custom development: its OData standard interface
//! (we call 1C; [`onec_odata`]) and its CommerceML site exchange (1C calls us; [`commerceml`]
//! and [`exchange`]).

pub mod cli;
pub mod commerceml;
pub mod config;
pub mod exchange;
pub mod jobs;
pub mod onec_odata;
pub mod stock;

use async_trait::async_trait;
use chrono::NaiveDateTime;

use crate::connectors::{Failure, Kind};
use crate::domain::System;
use crate::sync::DeliveryError;

/// A failed call to the accounting system, with its retry decision. 1C has no outcome of
/// its own a caller acts on yet (an object not found is a permanent failure with its 404);
/// one would be a variant beside [`AccountingError::Failed`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountingError {
    #[error("{0}")]
    Failed(Failure),
}

impl AccountingError {
    pub fn failure(&self) -> &Failure {
        match self {
            AccountingError::Failed(f) => f,
        }
    }

    pub fn kind(&self) -> Kind {
        self.failure().kind
    }

    pub fn status(&self) -> Option<u16> {
        self.failure().status
    }

    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }

    pub fn is_auth(&self) -> bool {
        self.failure().is_auth()
    }

    pub(crate) fn permanent(message: impl Into<String>) -> AccountingError {
        AccountingError::Failed(Failure::permanent(message))
    }

    pub(crate) fn transient(message: impl Into<String>) -> AccountingError {
        AccountingError::Failed(Failure::transient(message))
    }
}

impl From<Failure> for AccountingError {
    fn from(f: Failure) -> AccountingError {
        AccountingError::Failed(f)
    }
}

impl From<AccountingError> for DeliveryError {
    fn from(e: AccountingError) -> DeliveryError {
        match e {
            AccountingError::Failed(f) => f.into(),
        }
    }
}

/// A client as a counterparty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterpartyRequest {
    pub name: String,
    /// E.164.
    pub phone: Option<String>,
    /// Normalised; a school's payer may be known by e-mail alone.
    pub email: Option<String>,
    pub inn: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Invoice,
    Sales,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLine {
    pub service_id: String,
    pub name: String,
    pub quantity: u32,
    pub price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRequest {
    pub counterparty_key: String,
    /// Local date and time of the document.
    pub date: NaiveDateTime,
    /// Written into the document's comment; finds it again after an unknown outcome.
    pub marker: String,
    pub lines: Vec<DocumentLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StockBalance {
    /// The item's reference key.
    pub item: String,
    pub quantity: f64,
}

/// What the delivery jobs need from an accounting system; OData today, an HTTP-service of a
/// configuration extension could stand in later.
#[async_trait]
pub trait Accounting: Send + Sync {
    fn system(&self) -> System;
    /// By ИНН first (exact), then by phone.
    async fn find_counterparty(
        &self,
        phone: Option<&str>,
        inn: Option<&str>,
    ) -> Result<Option<String>, AccountingError>;
    /// By the e-mail in the counterparty's contact information.
    async fn find_counterparty_by_email(
        &self,
        email: &str,
    ) -> Result<Option<String>, AccountingError>;
    async fn create_counterparty(
        &self,
        request: &CounterpartyRequest,
    ) -> Result<String, AccountingError>;
    async fn find_document(
        &self,
        kind: DocKind,
        marker: &str,
    ) -> Result<Option<String>, AccountingError>;
    async fn create_document(
        &self,
        kind: DocKind,
        doc: &DocumentRequest,
    ) -> Result<String, AccountingError>;
    async fn post_document(&self, kind: DocKind, key: &str) -> Result<(), AccountingError>;
    async fn stock(&self) -> Result<Vec<StockBalance>, AccountingError>;
}
