//! OAuth token pairs (`oauth_tokens`, migration 0003), one per business and system. An upsert
//! replaces a pair in one statement, atomic on both backends.

use crate::domain::{BusinessId, System};
use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::{Store, StoreError, from_millis, to_millis};

/// An access/refresh pair. Debug output never shows the tokens.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenPair {
    pub fn same_refresh(&self, other: &TokenPair) -> bool {
        self.refresh_token.expose_secret() == other.refresh_token.expose_secret()
    }
}

impl Store {
    pub async fn oauth_tokens(
        &self,
        business_id: &BusinessId,
        system: System,
    ) -> Result<Option<TokenPair>, StoreError> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at FROM oauth_tokens
             WHERE business_id = $1 AND system = $2",
        )
        .bind(business_id.as_str())
        .bind(system.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let access: String = row.try_get("access_token")?;
        let refresh: String = row.try_get("refresh_token")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Ok(Some(TokenPair {
            access_token: SecretString::from(access),
            refresh_token: SecretString::from(refresh),
            expires_at: from_millis(expires_at)?,
        }))
    }

    /// Replaces the stored pair in one statement.
    pub async fn save_oauth_tokens(
        &self,
        business_id: &BusinessId,
        system: System,
        pair: &TokenPair,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_tokens
                 (business_id, system, access_token, refresh_token, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (business_id, system) DO UPDATE SET
                 access_token = excluded.access_token,
                 refresh_token = excluded.refresh_token,
                 expires_at = excluded.expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(business_id.as_str())
        .bind(system.as_str())
        .bind(pair.access_token.expose_secret())
        .bind(pair.refresh_token.expose_secret())
        .bind(to_millis(pair.expires_at))
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
