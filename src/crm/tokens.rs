//! OAuth token pairs in the store (`oauth_tokens`, migration 0003), one per business and
//! system, and the pair a CRM client calls with ([`OAuthTokens`]). amoCRM's and Bitrix24's
//! refresh tokens work once: the pair a refresh returns replaces the stored one in a single
//! statement before the new access token is used, so the store always holds the newest pair the
//! CRM has handed out.

use crate::domain::{BusinessId, System};
use std::future::Future;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::CrmError;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

pub use crate::store::tokens::TokenPair;

/// Refresh this long before the access token expires, so no request races its expiry.
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// How long one instance may hold a business's refresh to itself: longer than a refresh call
/// takes (the clients time out in 30 s), short enough that a holder that died frees it soon.
const REFRESH_LOCK: chrono::Duration = chrono::Duration::seconds(45);

/// How often an instance waiting for another's refresh looks again.
const REFRESH_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A failure of the token store (or another of the store's reads a CRM call needs): passing.
pub fn store_error(e: StoreError) -> CrmError {
    CrmError::transient(format!("token store: {e}"))
}

/// Reads and writes the pair of one business in one system.
#[derive(Clone, Debug)]
pub struct TokenStore {
    store: Store,
    business_id: BusinessId,
    system: System,
    /// This client as the refresh lock's holder.
    holder: String,
}

impl TokenStore {
    pub fn new(store: Store, business_id: &BusinessId, system: System) -> TokenStore {
        TokenStore {
            store,
            business_id: business_id.clone(),
            system,
            holder: crate::store::new_id(),
        }
    }

    /// The lock's row: one per business and system, beside the loops' leases.
    fn lock_name(&self) -> String {
        format!("oauth_refresh:{}", self.system)
    }

    /// Takes the business's refresh to this client alone, across every instance sharing the
    /// store (a row in `loop_leases`, so it works the same on both backends and a dead holder's
    /// lock runs out); waits while another holds it, at most as long as a lock lasts.
    async fn lock_refresh(&self, clock: &dyn Clock) -> Result<(), StoreError> {
        let give_up = std::time::Instant::now()
            + REFRESH_LOCK
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(45));
        loop {
            let now = clock.now();
            let held = self
                .store
                .take_lease(
                    &self.business_id,
                    &self.lock_name(),
                    &self.holder,
                    now,
                    now + REFRESH_LOCK,
                )
                .await?;
            if held || std::time::Instant::now() >= give_up {
                return Ok(());
            }
            tokio::time::sleep(REFRESH_LOCK_POLL).await;
        }
    }

    async fn unlock_refresh(&self) {
        if let Err(e) = self
            .store
            .drop_lease(&self.business_id, &self.lock_name(), &self.holder)
            .await
        {
            tracing::warn!(error = %e, "cannot free the token refresh lock; it runs out on its own");
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
            .ok_or_else(|| CrmError::auth(format!("no {} tokens; {}", self.crm, self.fix)))
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

    /// Spends the refresh token and stores the new pair before anything uses it, holding the
    /// business's refresh lock so that of several instances only one spends it.
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
        self.tokens.lock_refresh(clock).await.map_err(store_error)?;
        let refreshed = self.refresh_alone(state, clock, refresh).await;
        self.tokens.unlock_refresh().await;
        refreshed
    }

    async fn refresh_alone<F, Fut>(
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
        CrmError::auth(format!(
            "no {} tokens are stored for this business; {}",
            self.crm, self.fix
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use chrono::TimeZone;
    use secrecy::{ExposeSecret, SecretString};

    #[tokio::test]
    async fn a_saved_pair_replaces_the_old_one_on_every_backend() {
        for store in crate::store::testing::all().await {
            let tokens = TokenStore::new(store, &bid("b1"), System::AmoCrm);
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

    /// Two instances sharing the store find the pair expiring at once: the refresh token is
    /// spent once (a second spend would be refused by the CRM and lose the integration), and
    /// both call with the new access token. On SQLite and PostgreSQL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_refresh_once_between_them() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        for store in crate::store::testing::all().await {
            let clock =
                crate::clock::FakeClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap());
            let pair = |a: &str, r: &str, expires_at| TokenPair {
                access_token: SecretString::from(a.to_string()),
                refresh_token: SecretString::from(r.to_string()),
                expires_at,
            };
            let expiring = clock.now() + chrono::Duration::minutes(1);
            TokenStore::new(store.clone(), &bid("b1"), System::AmoCrm)
                .save(&pair("a1", "r1", expiring), clock.now())
                .await
                .unwrap();
            let spent = Arc::new(AtomicUsize::new(0));
            let instance = || {
                OAuthTokens::new(
                    TokenStore::new(store.clone(), &bid("b1"), System::AmoCrm),
                    "amoCRM",
                    "authorise again",
                )
            };
            let (one, two) = (instance(), instance());
            let (a, b) = tokio::join!(
                call(&one, &clock, spent.clone()),
                call(&two, &clock, spent.clone())
            );
            assert_eq!(a.unwrap().expose_secret(), "a2");
            assert_eq!(b.unwrap().expose_secret(), "a2");
            assert_eq!(
                spent.load(Ordering::SeqCst),
                1,
                "the refresh token was spent once"
            );
        }
    }

    /// One request's call for the access token, its refresh a CRM that takes its time.
    async fn call(
        tokens: &OAuthTokens,
        clock: &crate::clock::FakeClock,
        spent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<SecretString, CrmError> {
        let expires_at = clock.now() + chrono::Duration::hours(24);
        tokens
            .access_token(clock, |refresh: SecretString| async move {
                assert_eq!(refresh.expose_secret(), "r1", "only r1 is ever spent");
                spent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Long enough for the other instance to arrive meanwhile.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok(TokenPair {
                    access_token: SecretString::from("a2".to_string()),
                    refresh_token: SecretString::from("r2".to_string()),
                    expires_at,
                })
            })
            .await
    }
}
