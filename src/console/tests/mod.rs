//! The console over HTTP, without a browser: sessions, roles, businesses, CSRF, and what each
//! page shows from the store. Each test runs on SQLite and, when configured, PostgreSQL; this file
//! holds the fixtures the parts share.

mod access;
mod pages;

use crate::domain::bid;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use tower::ServiceExt;

use super::*;
use crate::booking::sandbox::Sandbox;
use crate::clock::FakeClock;
use crate::domain::{Booking, BookingStatus, Channel, ChatRef, Money, Source, Utm};
use crate::normalize::Phone;
use crate::store::testing;
use crate::sync::jobs::{JobState, NewJob, Queue};

const PASSWORD: &str = "correct horse battery";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 10, 9, 0, 0).unwrap()
}

struct Console {
    router: Router,
}

struct Answer {
    status: StatusCode,
    location: String,
    cookies: Vec<String>,
    body: String,
}

impl Answer {
    /// The value the answer sets for cookie `name` (empty when it drops it).
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The hidden CSRF field of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("end of the value")].to_string()
    }
}

async fn console(store: Store) -> Console {
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(start()));
    let tz: Tz = "Europe/Moscow".parse().unwrap();
    let view = |id: &str| BusinessView {
        id: bid(id),
        name: format!("Салон {id}"),
        timezone: tz,
        telegram_bot: Some("salon_bot".into()),
        max_bot: None,
        schedule: System::Sandbox,
        crm: Some(System::AmoCrm),
        systems: vec![System::Sandbox, System::AmoCrm],
        webhook_sources: vec!["amocrm"],
        webhook_prefix: "/webhooks/".into(),
        webhook_secret: "webhook-secret-0123456789".into(),
        booking: Arc::new(Sandbox::new(store.clone(), &bid(id), tz, clock.clone())),
        crm_client: None,
    };
    let state = ConsoleState::new(
        store.clone(),
        clock.clone(),
        vec![view("b1"), view("b2")],
        None,
    )
    .unwrap();
    let hash = auth::hash_password(PASSWORD).unwrap();
    for (login, role, business) in [
        ("olga", Role::Owner, "b1"),
        ("mila", Role::Marketer, "b1"),
        ("max", Role::Manager, "b1"),
        ("oleg", Role::Operator, "b1"),
        ("bob", Role::Owner, "b2"),
    ] {
        store
            .add_console_user(login, &hash, role, &[business.to_string()], start())
            .await
            .unwrap();
    }
    Console {
        router: router(Arc::new(state)),
    }
}

impl Console {
    async fn send(&self, request: Request<Body>) -> Answer {
        let mut request = request;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 50000))));
        let answer = self.router.clone().oneshot(request).await.unwrap();
        let status = answer.status();
        let location = answer
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let cookies = answer
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            location,
            cookies,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Answer {
        self.send(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            Request::post(path)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Signs in as the sign-in page asks; the session cookie header.
    async fn sign_in(&self, login: &str) -> String {
        let page = self.get("/console/login", "").await;
        let token = page.cookie("zapis_login").expect("a sign-in token cookie");
        assert_eq!(page.csrf(), token);
        let answer = self
            .post(
                "/console/login",
                &format!("zapis_login={token}"),
                &[("login", login), ("password", PASSWORD), ("csrf", &token)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let session = answer.cookie("zapis_session").expect("a session cookie");
        let set = answer
            .cookies
            .iter()
            .find(|c| c.starts_with("zapis_session="))
            .unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        format!("zapis_session={session}")
    }
}

fn booking(id: &str, business: &str, phone: &str, source: Source) -> Booking {
    Booking {
        id: crate::domain::bk(id),
        business_id: bid(business),
        client_phone: Phone::parse(phone).unwrap(),
        client_name: format!("Клиент {id}"),
        client_email: None,
        service_id: "s1".into(),
        service_name: "Стрижка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: start() + chrono::Duration::days(1),
        duration_min: 60,
        price: Money::from_rubles(1800),
        status: BookingStatus::Booked,
        source,
        chat: Some(ChatRef::new(Channel::Telegram, format!("chat-{id}"))),
        external_id: Some(crate::domain::rec(&format!("rec-{id}"))),
        created_at: start(),
    }
}

async fn client_id(store: &Store, business: &str, booking: &str) -> String {
    let rows = store
        .bookings_starting_between(
            &bid(business),
            start() - chrono::Duration::days(10),
            start() + chrono::Duration::days(10),
            10,
        )
        .await
        .unwrap();
    rows.into_iter()
        .find(|(_, b)| b.id == booking)
        .map(|(c, _)| c)
        .expect("the booking")
}
