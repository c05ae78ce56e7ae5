//! The one way a connector gets an HTTP client, and the one way a call that got no answer is
//! reported.

use std::time::Duration;

use super::Failure;

pub const USER_AGENT: &str = concat!("zapis/", env!("CARGO_PKG_VERSION"));

/// A vendor may take this long to accept a connection; a call as a whole gets its own
/// timeout. Never longer than the call's.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client builder with the call timeout, a connect timeout and our User-Agent. `None` for a
/// client whose calls set their own (long polls). Connectors add what is theirs (extra roots)
/// and build.
pub fn builder(timeout: Option<Duration>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().user_agent(USER_AGENT);
    match timeout {
        Some(timeout) => {
            let timeout = timeout.max(Duration::from_secs(1));
            builder = builder
                .timeout(timeout)
                .connect_timeout(CONNECT_TIMEOUT.min(timeout));
        }
        None => builder = builder.connect_timeout(CONNECT_TIMEOUT),
    }
    builder
}

/// [`builder`], built. Building fails only when the TLS backend cannot start, which no
/// setting can fix; the message says so.
pub fn client(timeout: Option<Duration>) -> Result<reqwest::Client, Failure> {
    builder(timeout)
        .build()
        .map_err(|e| Failure::permanent(format!("cannot build the HTTP client: {e}")))
}

/// A booking system's client, whose calls a client in a chat waits on: the call timeout, and
/// at most 5 s to connect. Building fails only when the TLS backend cannot start; so would
/// `Client::new`, whose client this is then.
pub fn booking_client(timeout_secs: u64) -> reqwest::Client {
    builder(Some(Duration::from_secs(timeout_secs)))
        .connect_timeout(Duration::from_secs(timeout_secs.clamp(1, 5)))
        .build()
        .unwrap_or_default()
}

/// A call that got no answer: always transient, since the vendor may come back. The URL is
/// left out, since it may carry a token or a phone in its query.
pub fn transport_failure(vendor: &str, what: &str, e: reqwest::Error) -> Failure {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "transport error"
    };
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(" {what}")
    };
    Failure::transient(format!("{vendor}{what} {kind}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_transient_and_names_no_url() {
        // A port nobody listens on: bind, note it, free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let client = client(Some(Duration::from_secs(2))).expect("client");
        let e = client
            .get(format!("http://127.0.0.1:{port}/hook?token=SECRET"))
            .send()
            .await
            .expect_err("nobody listens");
        let f = transport_failure("YClients", "book_record", e);
        assert!(f.is_transient());
        assert!(
            f.message.starts_with("YClients book_record cannot connect"),
            "{f}"
        );
        assert!(!f.message.contains("SECRET"), "{f}");
    }
}
