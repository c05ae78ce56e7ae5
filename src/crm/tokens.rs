//! OAuth token pairs in the store (`oauth_tokens`, migration 0003), one per business and
//! system. amoCRM's refresh token works once: the pair it returns replaces the stored one in a
//! single statement before the new access token is used, so the store always holds the newest
//! pair the CRM has handed out.

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError};

pub use crate::store::tokens::TokenPair;

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
        self.store
            .oauth_tokens(&self.business_id, self.system)
            .await
    }

    /// Replaces the stored pair in one statement (an upsert is atomic on both backends).
    pub async fn save(&self, pair: &TokenPair, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.store
            .save_oauth_tokens(&self.business_id, self.system, pair, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use secrecy::{ExposeSecret, SecretString};

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
