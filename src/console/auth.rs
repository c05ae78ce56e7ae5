//! Who is signed in to the console: argon2 password hashes, the session cookie (random, kept
//! in the store only as a digest), the per-session CSRF token every form carries, and the
//! throttle on sign-in attempts. Pages ask [`signed_in`] first and act on nothing else.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine as _;
use chrono::Duration;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ConsoleState, layout};
use crate::i18n::Lang;
use crate::store::{ConsoleSession, StoreError};

pub const SESSION_COOKIE: &str = "zapis_session";
/// Carries the sign-in form's CSRF token before there is a session (double submit).
const LOGIN_COOKIE: &str = "zapis_login";
/// A session lasts a working day, enforced by the store whatever the browser keeps; signing in
/// again is cheap, a stolen cookie lives short.
pub const SESSION_LIFE: Duration = Duration::hours(12);
/// Logins and passwords longer than this are refused before any hashing.
const MAX_FIELD: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An argon2id hash in PHC format, with the crate's default cost.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// False as well for a hash that does not parse: a damaged row signs nobody in.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// 32 random bytes, URL-safe: session cookies and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a session cookie.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sign-in attempts allowed per login and per client address, whatever their outcome: a
/// guesser is slowed, and argon2's cost cannot be turned against the server.
pub struct Throttle {
    per_login: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl Throttle {
    pub fn new(per_login_per_minute: u32, per_address_per_minute: u32) -> Throttle {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Throttle {
            per_login: RateLimiter::keyed(quota(per_login_per_minute)),
            per_address: RateLimiter::keyed(quota(per_address_per_minute)),
        }
    }

    fn admit(&self, login: &str, address: IpAddr) -> bool {
        // Both are charged, so a guesser cannot spend one key's allowance on another's.
        let by_address = self.per_address.check_key(&address).is_ok();
        let by_login = self.per_login.check_key(&login.to_lowercase()).is_ok();
        if self.per_login.len() > 100_000 {
            self.per_login.retain_recent();
            self.per_address.retain_recent();
        }
        by_address && by_login
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(5, 30)
    }
}

/// Why a page is not shown.
pub enum Refusal {
    /// No session, an expired one or a forged cookie: to the sign-in page, the cookie dropped.
    SignIn,
    /// Signed in, but the role or the business does not allow it.
    Forbidden(Lang),
    NotFound(Lang),
    /// A form without the session's token.
    BadCsrf(Lang),
    Broken(Lang, String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => (
                CookieJar::new().add(removal(SESSION_COOKIE)),
                Redirect::to("/console/login"),
            )
                .into_response(),
            Refusal::Forbidden(lang) => {
                layout::error_page(lang, StatusCode::FORBIDDEN, "console-forbidden")
            }
            Refusal::NotFound(lang) => {
                layout::error_page(lang, StatusCode::NOT_FOUND, "console-not-found")
            }
            Refusal::BadCsrf(lang) => {
                layout::error_page(lang, StatusCode::FORBIDDEN, "console-bad-form")
            }
            Refusal::Broken(lang, what) => {
                tracing::error!(error = %what, "console page failed");
                layout::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, "console-broken")
            }
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Broken(Lang::Ru, e.to_string())
    }
}

/// The session behind the request's cookie, or why there is none.
pub async fn signed_in(state: &ConsoleState, jar: &CookieJar) -> Result<ConsoleSession, Refusal> {
    let Some(token) = jar.get(SESSION_COOKIE).map(Cookie::value) else {
        return Err(Refusal::SignIn);
    };
    if token.is_empty() || token.len() > 64 {
        return Err(Refusal::SignIn);
    }
    state
        .store
        .console_session(&token_digest(token), state.clock.now())
        .await?
        .ok_or(Refusal::SignIn)
}

/// Compares a form's token with the session's without an early exit.
pub fn check_csrf(session: &ConsoleSession, given: &str, lang: Lang) -> Result<(), Refusal> {
    if !given.is_empty() && crate::secrets::same_secret(given, &session.csrf) {
        Ok(())
    } else {
        Err(Refusal::BadCsrf(lang))
    }
}

fn cookie_of(state: &ConsoleState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookies)
        .build()
}

/// A cookie that makes the browser drop its namesake.
fn removal(name: &'static str) -> Cookie<'static> {
    let mut gone = Cookie::build((name, "")).path("/console").build();
    gone.make_removal();
    gone
}

pub async fn login_page(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let lang = super::lang_of(&headers, &jar);
    if signed_in(&state, &jar).await.is_ok() {
        return Redirect::to("/console").into_response();
    }
    let token = random_token();
    let jar = jar.add(cookie_of(&state, LOGIN_COOKIE, token.clone()));
    (jar, layout::login(lang, &token, None)).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let lang = super::lang_of(&headers, &jar);
    let expected = jar.get(LOGIN_COOKIE).map(Cookie::value).unwrap_or("");
    if expected.is_empty() || !crate::secrets::same_secret(&form.csrf, expected) {
        return Refusal::BadCsrf(lang).into_response();
    }
    let retry_token = random_token();
    let again = |state: &ConsoleState, jar: CookieJar, key: &str, status: StatusCode| {
        let jar = jar.add(cookie_of(state, LOGIN_COOKIE, retry_token.clone()));
        let mut page = layout::login(lang, &retry_token, Some(key)).into_response();
        *page.status_mut() = status;
        (jar, page).into_response()
    };
    let login = form.login.trim().to_string();
    if login.is_empty() || login.len() > MAX_FIELD || form.password.len() > MAX_FIELD {
        return again(
            &state,
            jar,
            "console-login-failed",
            StatusCode::UNAUTHORIZED,
        );
    }
    if !state.throttle.admit(&login, peer.ip()) {
        tracing::warn!(address = %peer.ip(), "console sign-in throttled");
        return again(
            &state,
            jar,
            "console-login-throttled",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let user = match state.store.console_user_by_login(&login).await {
        Ok(user) => user,
        Err(e) => return Refusal::Broken(lang, e.to_string()).into_response(),
    };
    // An unknown login costs the same hashing as a known one, so timing does not tell which
    // logins exist.
    let hash = user
        .as_ref()
        .map_or_else(|| state.decoy_hash.clone(), |(_, h)| h.clone());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some((user, _)) = user.filter(|_| verified) else {
        super::journal(
            &state,
            None,
            "sign-in",
            "refused",
            &format!("login {login:?}"),
        )
        .await;
        return again(
            &state,
            jar,
            "console-login-failed",
            StatusCode::UNAUTHORIZED,
        );
    };
    let token = random_token();
    let now = state.clock.now();
    if let Err(e) = state
        .store
        .create_console_session(
            &token_digest(&token),
            &user.id,
            &random_token(),
            now,
            now + SESSION_LIFE,
        )
        .await
    {
        return Refusal::Broken(lang, e.to_string()).into_response();
    }
    super::journal(&state, Some(&user.login), "sign-in", "done", "").await;
    let jar = jar
        .add(removal(LOGIN_COOKIE))
        .add(cookie_of(&state, SESSION_COOKIE, token));
    (jar, Redirect::to("/console")).into_response()
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, Refusal> {
    let lang = super::lang_of(&headers, &jar);
    let session = signed_in(&state, &jar).await?;
    check_csrf(&session, &form.csrf, lang)?;
    if let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) {
        state
            .store
            .end_console_session(&token_digest(&token))
            .await?;
    }
    super::journal(&state, Some(&session.user.login), "sign-out", "done", "").await;
    let mut answer = Refusal::SignIn.into_response();
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").expect("hashed");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct hors", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse").expect("hashed"),
            "salted"
        );
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_digest(&a).len(), 64);
        assert_ne!(token_digest(&a), a);
    }

    #[test]
    fn the_throttle_counts_per_login_and_per_address() {
        let t = Throttle::new(2, 3);
        let (one, two) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        assert!(t.admit("anna", one));
        assert!(t.admit("ANNA", two));
        assert!(!t.admit("anna", one), "third try for the same login");
        assert!(t.admit("boris", one));
        assert!(!t.admit("vera", one), "fourth try from the same address");
    }
}
