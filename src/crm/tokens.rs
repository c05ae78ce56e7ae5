//! OAuth token pairs in the store (`oauth_tokens`, migration 0003), one per business and
//! system, and the pair a CRM client calls with ([`OAuthTokens`]). amoCRM's and Bitrix24's
//! refresh tokens work once: the pair a refresh returns replaces the stored one in a single
//! statement before the new access token is used, so the store always holds the newest pair the
//! CRM has handed out.

use std::future::Future;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::CrmError;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

pub use crate::store::tokens::TokenPair;

/// Refresh this long before the access token expires, so no request races its expiry.
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// A failure of the token store (or another of the store's reads a CRM call needs): passing.
pub fn store_error(e: StoreError) -> CrmError {
    CrmError::transient(format!("token store: {e}"))
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

/// The pair an OAuth client calls with: read from its [`TokenStore`] on first use, then held in
/// memory behind a lock that a refresh keeps, so one refresh token is spent by one request
/// only. The CRM's token endpoint stays the client's: a refresh is handed the refresh token to
/// spend and answers with the new pair.
pub struct OAuthTokens {
    tokens: TokenStore,
    /// Held across a refresh so one refresh token is spent by one request only.
    state: tokio::sync::Mutex<Option<TokenPair>>,
    /// The CRM as the log and the errors name it (`"amoCRM"`).
    crm: &'static str,
    /// What to do when only a fresh authorisation helps; ends the errors that say so.
    fix: &'static str,
}

impl OAuthTokens {
    pub fn new(tokens: TokenStore, crm: &'static str, fix: &'static str) -> OAuthTokens {
        OAuthTokens {
            tokens,
            state: tokio::sync::Mutex::new(None),
            crm,
            fix,
        }
    }

    /// Stores the first pair, which `exchange` (an authorisation code spent) answers with.
    pub async fn exchange(
        &self,
        clock: &dyn Clock,
        exchange: impl Future<Output = Result<TokenPair, CrmError>>,
    ) -> Result<(), CrmError> {
        let mut state = self.state.lock().await;
        let pair = exchange.await?;
        self.tokens
            .save(&pair, clock.now())
            .await
            .map_err(store_error)?;
        *state = Some(pair);
        Ok(())
    }

    /// The access token to call with, refreshed first (through `refresh`) when it expires
    /// within [`REFRESH_MARGIN`].
    pub async fn access_token<F, Fut>(
        &self,
        clock: &dyn Clock,
        refresh: F,
    ) -> Result<SecretString, CrmError>
    where
        F: FnOnce(SecretString) -> Fut,
        Fut: Future<Output = Result<TokenPair, CrmError>>,
    {
        let mut state = self.state.lock().await;
        if state.is_none() {
            *state = self.tokens.load().await.map_err(store_error)?;
        }
        let Some(pair) = state.as_ref() else {
            return Err(self.none_stored());
        };
        if pair.expires_at - REFRESH_MARGIN <= clock.now() {
            self.refresh_locked(&mut state, clock, refresh).await?;
        }
        state
            .as_ref()
            .map(|p| p.access_token.clone())
            .ok_or_else(|| CrmError::Auth {
                message: format!("no {} tokens; {}", self.crm, self.fix),
            })
    }

    /// After the CRM refused `refused`: refresh (through `refresh`) unless someone already
    /// replaced it.
    pub async fn refresh_after_401<F, Fut>(
        &self,
        refused: &SecretString,
        clock: &dyn Clock,
        refresh: F,
    ) -> Result<(), CrmError>
    where
        F: FnOnce(SecretString) -> Fut,
        Fut: Future<Output = Result<TokenPair, CrmError>>,
    {
        let mut state = self.state.lock().await;
        let still_current = state
            .as_ref()
            .is_some_and(|p| p.access_token.expose_secret() == refused.expose_secret());
        if still_current {
            self.refresh_locked(&mut state, clock, refresh).await?;
        }
        Ok(())
    }

    /// Spends the refresh token and stores the new pair before anything uses it.
    async fn refresh_locked<F, Fut>(
        &self,
        state: &mut Option<TokenPair>,
        clock: &dyn Clock,
        refresh: F,
    ) -> Result<(), CrmError>
    where
        F: FnOnce(SecretString) -> Fut,
        Fut: Future<Output = Result<TokenPair, CrmError>>,
    {
        // Another instance sharing the store may have rotated the pair already; its refresh
        // token is the only live one, so take it rather than spend ours (already dead).
        let stored = self.tokens.load().await.map_err(store_error)?;
        if let (Some(stored), Some(held)) = (&stored, state.as_ref())
            && !stored.same_refresh(held)
        {
            let fresh = stored.expires_at - REFRESH_MARGIN > clock.now();
            *state = Some(stored.clone());
            if fresh {
                return Ok(());
            }
        }
        let current = state.clone().or(stored).ok_or_else(|| self.none_stored())?;
        let pair = refresh(current.refresh_token).await?;
        // The old refresh token is spent from this instant: persist the new pair first. If the
        // store fails, keep the pair in memory (it is the only live one) and say so.
        let saved = self.tokens.save(&pair, clock.now()).await;
        *state = Some(pair);
        if let Err(e) = saved {
            tracing::error!(error = %e, "{} tokens rotated but could not be stored", self.crm);
            return Err(store_error(e));
        }
        tracing::info!("{} access token refreshed; new pair stored", self.crm);
        Ok(())
    }

    fn none_stored(&self) -> CrmError {
        CrmError::Auth {
            message: format!(
                "no {} tokens are stored for this business; {}",
                self.crm, self.fix
            ),
        }
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
