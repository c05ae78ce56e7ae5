//! OAuth token pairs in the store (`oauth_tokens`, migration 0003), one per business and
//! system. amoCRM's refresh token works once: the pair it returns replaces the stored one in a
//! single statement before the new access token is used, so the store always holds the newest
//! pair the CRM has handed out.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use crate::store::{Store, StoreError, from_millis, to_millis};

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

/// Reads and writes the pair of one business in one system.
#[derive(Clone, Debug)]
pub struct TokenStore {
    store: Store,
    business_id: String,
    system: &'static str,
}

impl TokenStore {
    pub fn new(store: Store, business_id: impl Into<String>, system: &'static str) -> TokenStore {
        TokenStore {
            store,
            business_id: business_id.into(),
            system,
        }
    }

    pub async fn load(&self) -> Result<Option<TokenPair>, StoreError> {
        let row = sqlx::query(
            "SELECT access_token, refresh_token, expires_at FROM oauth_tokens
             WHERE business_id = $1 AND system = $2",
        )
        .bind(&self.business_id)
        .bind(self.system)
        .fetch_optional(self.store.pool())
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

    /// Replaces the stored pair in one statement (an upsert is atomic on both backends).
    pub async fn save(&self, pair: &TokenPair, now: DateTime<Utc>) -> Result<(), StoreError> {
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
        .bind(&self.business_id)
        .bind(self.system)
        .bind(pair.access_token.expose_secret())
        .bind(pair.refresh_token.expose_secret())
        .bind(to_millis(pair.expires_at))
        .bind(to_millis(now))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_saved_pair_replaces_the_old_one_on_every_backend() {
        for store in crate::store::testing::all().await {
            let tokens = TokenStore::new(store, "b1", "amocrm");
            assert!(tokens.load().await.unwrap().is_none());
            let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let pair = |a: &str, r: &str| TokenPair {
                access_token: SecretString::from(a.to_string()),
                refresh_token: SecretString::from(r.to_string()),
                expires_at: t0,
            };
            tokens.save(&pair("a1", "r1"), t0).await.unwrap();
            tokens.save(&pair("a2", "r2"), t0).await.unwrap();
            let loaded = tokens.load().await.unwrap().unwrap();
            assert_eq!(loaded.access_token.expose_secret(), "a2");
            assert_eq!(loaded.refresh_token.expose_secret(), "r2");
            assert_eq!(loaded.expires_at, t0);
            assert!(!format!("{loaded:?}").contains("a2"));
        }
    }
}
