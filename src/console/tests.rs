//! The console over HTTP, without a browser: sessions, roles, businesses, CSRF, and what each
//! page shows from the store. Each test runs on SQLite and, when configured, PostgreSQL.

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
        id: id.into(),
        name: format!("Салон {id}"),
        timezone: tz,
        telegram_bot: Some("salon_bot".into()),
        max_bot: None,
        schedule: "sandbox",
        crm: Some("amocrm"),
        systems: vec!["sandbox".into(), "amocrm".into()],
        webhook_sources: vec!["amocrm"],
        webhook_secret: "webhook-secret-0123456789".into(),
        booking: Arc::new(Sandbox::new(store.clone(), id, tz, clock.clone())),
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
        id: id.into(),
        business_id: business.into(),
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
        external_id: Some(format!("rec-{id}")),
        created_at: start(),
    }
}

async fn client_id(store: &Store, business: &str, booking: &str) -> String {
    let rows = store
        .bookings_starting_between(
            business,
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

#[tokio::test]
async fn nothing_opens_without_a_session_and_a_forged_cookie_signs_out() {
    for store in testing::all().await {
        let c = console(store).await;
        for path in [
            "/console",
            "/console/b/b1",
            "/console/b/b1/sources",
            "/console/b/b1/deliveries",
            "/console/b/b1/clients/x",
            "/console/b/b1/sources.csv",
        ] {
            let a = c.get(path, "").await;
            assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(a.location, "/console/login", "{path}");
        }
        let a = c
            .post("/console/b/b1/jobs/1/retry", "", &[("csrf", "x")])
            .await;
        assert_eq!(a.location, "/console/login");

        let good = c.sign_in("olga").await;
        assert_eq!(
            c.get("/console/b/b1/sources", &good).await.status,
            StatusCode::OK
        );
        // One character changed: no such session, the cookie is dropped.
        let mut forged = good.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let a = c.get("/console/b/b1/sources", &forged).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(a.location, "/console/login");
        assert_eq!(a.cookie("zapis_session").as_deref(), Some(""));

        // Signing out ends the session on the server, not only in the browser.
        let page = c.get("/console/b/b1/sources", &good).await;
        let a = c
            .post("/console/logout", &good, &[("csrf", &page.csrf())])
            .await;
        assert_eq!(a.location, "/console/login");
        assert_eq!(
            c.get("/console/b/b1/sources", &good).await.status,
            StatusCode::SEE_OTHER
        );
    }
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_forged_forms_and_then_everybody_for_a_while() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        let page = c.get("/console/login", "").await;
        let token = page.cookie("zapis_login").unwrap();
        // A form posted from elsewhere has no sign-in cookie to match.
        let a = c
            .post(
                "/console/login",
                "",
                &[("login", "olga"), ("password", PASSWORD), ("csrf", &token)],
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.cookie("zapis_session").is_none());

        let cookie = format!("zapis_login={token}");
        let wrong = [
            ("login", "olga"),
            ("password", "guess"),
            ("csrf", token.as_str()),
        ];
        let a = c.post("/console/login", &cookie, &wrong).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains("Неверный логин или пароль"), "{}", a.body);
        let unknown = [
            ("login", "nobody"),
            ("password", PASSWORD),
            ("csrf", token.as_str()),
        ];
        assert_eq!(
            c.post("/console/login", &cookie, &unknown).await.status,
            StatusCode::UNAUTHORIZED
        );
        for _ in 0..4 {
            c.post("/console/login", &cookie, &wrong).await;
        }
        // Five tries of olga's a minute: the right password waits too.
        let right = [
            ("login", "olga"),
            ("password", PASSWORD),
            ("csrf", token.as_str()),
        ];
        let a = c.post("/console/login", &cookie, &right).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert!(a.cookie("zapis_session").is_none());

        let refused = crate::sync::journal::read_journal(
            &store,
            &crate::sync::journal::JournalFilter {
                system: Some("console".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            refused.iter().any(|e| e.operation == "sign-in"
                && e.outcome == "refused"
                && e.error.as_deref().is_some_and(|d| d.contains("olga"))),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn roles_open_only_their_pages() {
    for store in testing::all().await {
        let c = console(store).await;
        let cases = [
            (
                "olga",
                ["sources", "bookings", "deliveries", "setup"].as_slice(),
                [].as_slice(),
            ),
            ("mila", &["sources"], &["bookings", "deliveries", "setup"]),
            ("max", &["bookings"], &["sources", "deliveries", "setup"]),
            ("oleg", &["deliveries", "setup"], &["sources", "bookings"]),
        ];
        for (login, open, closed) in cases {
            let session = c.sign_in(login).await;
            for page in open {
                let a = c.get(&format!("/console/b/b1/{page}"), &session).await;
                assert_eq!(a.status, StatusCode::OK, "{login} {page}: {}", a.body);
                assert!(
                    a.body.contains(&format!("href=\"/console/b/b1/{page}\"")),
                    "{login} {page}"
                );
            }
            for page in closed {
                let a = c.get(&format!("/console/b/b1/{page}"), &session).await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{login} {page}");
                // Nor is the page offered in the navigation.
                let home = c.get(&format!("/console/b/b1/{}", open[0]), &session).await;
                assert!(
                    !home
                        .body
                        .contains(&format!("href=\"/console/b/b1/{page}\"")),
                    "{login} {page}"
                );
            }
            let a = c.get("/console/b/b1", &session).await;
            assert_eq!(a.location, format!("/console/b/b1/{}", open[0]));
        }
    }
}

#[tokio::test]
async fn a_user_of_one_business_reaches_nothing_of_another() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        store
            .insert_booking(&booking(
                "k1",
                "b1",
                "+79161234567",
                Source::direct(Channel::Telegram),
            ))
            .await
            .unwrap();
        store
            .insert_booking(&booking(
                "k2",
                "b2",
                "+79167654321",
                Source::direct(Channel::Telegram),
            ))
            .await
            .unwrap();
        let (c1, c2) = (
            client_id(&store, "b1", "k1").await,
            client_id(&store, "b2", "k2").await,
        );
        let olga = c.sign_in("olga").await;
        assert_eq!(
            c.get(&format!("/console/b/b1/clients/{c1}"), &olga)
                .await
                .status,
            StatusCode::OK
        );
        // b2's client under b2's address: not olga's business.
        let a = c.get(&format!("/console/b/b2/clients/{c2}"), &olga).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(!a.body.contains("Клиент k2"));
        // b2's client under olga's own business: no such client there.
        let a = c.get(&format!("/console/b/b1/clients/{c2}"), &olga).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(!a.body.contains("Клиент k2"));
        for page in ["sources", "bookings", "deliveries", "setup"] {
            assert_eq!(
                c.get(&format!("/console/b/b2/{page}"), &olga).await.status,
                StatusCode::FORBIDDEN,
                "{page}"
            );
        }
        // bob of b2 lands on b2.
        let bob = c.sign_in("bob").await;
        assert_eq!(c.get("/console", &bob).await.location, "/console/b/b2");
        assert!(c.get("/console/b/b1/bookings", &bob).await.status == StatusCode::FORBIDDEN);
        // A business this deployment does not serve, even for someone who may see all.
        let hash = auth::hash_password(PASSWORD).unwrap();
        store
            .add_console_user("root", &hash, Role::Owner, &["*".to_string()], start())
            .await
            .unwrap();
        let root = c.sign_in("root").await;
        assert_eq!(
            c.get("/console/b/b3/bookings", &root).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            c.get("/console/b/b2/bookings", &root).await.status,
            StatusCode::OK
        );
        // Someone whose only business is not served here is told so, and may sign out.
        store
            .add_console_user("eve", &hash, Role::Owner, &["b9".to_string()], start())
            .await
            .unwrap();
        let eve = c.sign_in("eve").await;
        let a = c.get("/console", &eve).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.body.contains("не обслуживается"), "{}", a.body);
        assert!(a.body.contains("action=\"/console/logout\""), "{}", a.body);
        assert!(!a.body.contains("Салон b1"), "{}", a.body);
    }
}

#[tokio::test]
async fn retry_needs_the_session_token_and_is_journaled_with_who() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        let queue = Queue::new(store.clone());
        let job = NewJob {
            business_id: "b1".into(),
            system: "amocrm".into(),
            operation: "create_lead".into(),
            payload: serde_json::json!({ "booking": "k1" }),
            idempotency_key: "lead:k1".into(),
            ordering_key: Some("booking:k1".into()),
        };
        let id = queue
            .enqueue(&job, start())
            .await
            .unwrap()
            .expect("a new job");
        queue.kill(id, "HTTP 500 from amoCRM").await;
        let oleg = c.sign_in("oleg").await;
        let page = c.get("/console/b/b1/deliveries", &oleg).await;
        assert!(page.body.contains("HTTP 500 from amoCRM"), "{}", page.body);
        let path = format!("/console/b/b1/jobs/{id}/retry");
        assert_eq!(
            c.post(&path, &oleg, &[]).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            c.post(&path, &oleg, &[("csrf", "forged")]).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(queue.job(id).await.unwrap().unwrap().state, JobState::Dead);
        // A marketer's valid token does not make the marketer an operator.
        let mila = c.sign_in("mila").await;
        let mila_token = c.get("/console/b/b1/sources", &mila).await.csrf();
        assert_eq!(
            c.post(&path, &mila, &[("csrf", &mila_token)]).await.status,
            StatusCode::FORBIDDEN
        );

        let a = c.post(&path, &oleg, &[("csrf", &page.csrf())]).await;
        assert_eq!(a.location, format!("/console/b/b1/deliveries?retried={id}"));
        assert_eq!(
            queue.job(id).await.unwrap().unwrap().state,
            JobState::Pending
        );
        let after = c.get(&a.location, &oleg).await;
        assert!(
            after.body.contains(&format!("Задача {id}: ждут")),
            "{}",
            after.body
        );
        let journal = crate::sync::journal::read_journal(
            &store,
            &crate::sync::journal::JournalFilter {
                job_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let entry = journal
            .iter()
            .find(|e| e.system == "console")
            .expect("journaled");
        assert_eq!(
            (entry.operation.as_str(), entry.outcome.as_str()),
            ("retry", "revived")
        );
        assert!(
            entry.error.as_deref().unwrap().contains("by oleg"),
            "{entry:?}"
        );
    }
}

#[tokio::test]
async fn bookings_show_every_side_and_the_card_the_conversation() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        let mut source = Source::direct(Channel::Telegram);
        source.payload = Some("l_spring".into());
        source.link_name = Some("Весна".into());
        source.utm = Utm {
            source: Some("vk".into()),
            ..Utm::default()
        };
        store
            .insert_booking(&booking("k1", "b1", "+79161234567", source))
            .await
            .unwrap();
        // The CRM was last seen saying the visit is cancelled, while ours says booked.
        let mut tx = store.begin().await.unwrap();
        crate::store::put_known_in(
            &mut tx,
            "b1",
            "k1",
            "amocrm",
            "cancelled_by_business|0|m1",
            "cancelled_by_business",
            start(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store
            .log_chat(
                "b1",
                "telegram:chat-k1",
                start(),
                "client",
                "Хочу на стрижку",
                None,
            )
            .await
            .unwrap();
        store
            .log_chat(
                "b1",
                "telegram:chat-k1",
                start(),
                "bot",
                "Выберите мастера",
                None,
            )
            .await
            .unwrap();
        let max = c.sign_in("max").await;
        let list = c
            .get("/console/b/b1/bookings?from=2030-03-01&to=2030-03-31", &max)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(
            list.body.contains("Клиент k1") && list.body.contains("Весна"),
            "{}",
            list.body
        );
        assert!(list.body.contains("#rec-k1"), "the schedule's record id");
        assert!(
            list.body.contains("class=\"disagrees\""),
            "the CRM side disagrees"
        );
        assert!(list.body.contains("+7 916 123-45-67"), "{}", list.body);
        let card = c
            .get(
                &format!(
                    "/console/b/b1/clients/{}",
                    client_id(&store, "b1", "k1").await
                ),
                &max,
            )
            .await;
        assert!(
            card.body.contains("Хочу на стрижку") && card.body.contains("Выберите мастера"),
            "{}",
            card.body
        );
        assert!(card.body.contains("Весна"));
        // Outside the period, nothing.
        let empty = c
            .get("/console/b/b1/bookings?from=2031-01-01&to=2031-01-31", &max)
            .await;
        assert!(!empty.body.contains("Клиент k1"));
    }
}

#[tokio::test]
async fn links_are_created_with_their_addresses_and_a_printable_qr() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        let mila = c.sign_in("mila").await;
        let page = c.get("/console/b/b1/sources", &mila).await;
        let form = [
            ("csrf", page.csrf()),
            ("name", "Весна-VK".to_string()),
            ("utm_source", "vk".to_string()),
            ("utm_campaign", "spring".to_string()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = c.post("/console/b/b1/links", &mila, &form).await;
        assert!(
            a.location.starts_with("/console/b/b1/sources?created="),
            "{}",
            a.location
        );
        let again = c.post("/console/b/b1/links", &mila, &form).await;
        assert!(
            again.location.ends_with("error=taken"),
            "{}",
            again.location
        );
        let links = store.tracked_links("b1").await.unwrap();
        assert_eq!(links.len(), 1);
        let token = links[0].link.token.clone();
        assert_eq!(links[0].link.utm.campaign.as_deref(), Some("spring"));
        let page = c.get("/console/b/b1/sources", &mila).await;
        assert!(
            page.body
                .contains(&format!("https://t.me/salon_bot?start={token}")),
            "{}",
            page.body
        );
        let qr = c
            .get(&format!("/console/b/b1/links/{token}/qr.svg"), &mila)
            .await;
        assert_eq!(qr.status, StatusCode::OK);
        assert!(
            qr.body.starts_with("<?xml") && qr.body.contains("<svg"),
            "{}",
            &qr.body[..100.min(qr.body.len())]
        );
        assert_eq!(
            c.get("/console/b/b1/links/l_nope/qr.svg", &mila)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        // Without a token the form is refused and nothing is created.
        let a = c
            .post("/console/b/b1/links", &mila, &[("name", "Осень")])
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(store.tracked_links("b1").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn pages_refuse_framing_and_caching() {
    let c = console(testing::sqlite().await).await;
    let page = c.get("/console/login", "").await;
    assert_eq!(page.status, StatusCode::OK);
    let answer = c
        .router
        .clone()
        .oneshot(Request::get("/console/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let h = answer.headers();
    assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert!(
        h.get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn a_manager_forgets_a_client_from_the_card_and_the_journal_says_who() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        for (id, phone) in [("k1", "+79161234567"), ("k2", "+79167654321")] {
            let b = booking(id, "b1", phone, Source::direct(Channel::Telegram));
            store.insert_booking(&b).await.unwrap();
        }
        // A delivery about k2 is still on its way.
        Queue::new(store.clone())
            .enqueue(
                &NewJob {
                    business_id: "b1".into(),
                    system: "amocrm".into(),
                    operation: "create_lead".into(),
                    payload: serde_json::json!({ "booking": "k2" }),
                    idempotency_key: "lead:k2".into(),
                    ordering_key: Some("booking:k2".into()),
                },
                start(),
            )
            .await
            .unwrap();
        let (c1, c2) = (
            client_id(&store, "b1", "k1").await,
            client_id(&store, "b1", "k2").await,
        );
        let max = c.sign_in("max").await;
        let card = c.get(&format!("/console/b/b1/clients/{c1}"), &max).await;
        let action = format!("/console/b/b1/clients/{c1}/forget");
        assert!(
            card.body.contains(&format!("action=\"{action}\"")),
            "{}",
            card.body
        );
        // Without the session's token, or by a role that may not see clients: nothing happens.
        assert_eq!(
            c.post(&action, &max, &[]).await.status,
            StatusCode::FORBIDDEN
        );
        let mila = c.sign_in("mila").await;
        let mila_token = c.get("/console/b/b1/sources", &mila).await.csrf();
        assert_eq!(
            c.post(&action, &mila, &[("csrf", &mila_token)])
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        // bob of b2 cannot erase b1's client through his own business either.
        let bob = c.sign_in("bob").await;
        let bob_token = c.get("/console/b/b2/bookings", &bob).await.csrf();
        let a = c
            .post(
                &format!("/console/b/b2/clients/{c1}/forget"),
                &bob,
                &[("csrf", &bob_token)],
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let phones = |store: Store| async move { store.remembered_phones().await };
        assert_eq!(
            phones(store.clone()).await,
            ["+79161234567", "+79167654321"]
        );

        let a = c.post(&action, &max, &[("csrf", &card.csrf())]).await;
        assert_eq!(a.location, "/console/b/b1/bookings?forgot=1");
        let list = c.get(&a.location, &max).await;
        assert!(list.body.contains("Клиент забыт"), "{}", list.body);
        assert!(!list.body.contains("Клиент k1"), "{}", list.body);
        assert_eq!(phones(store.clone()).await, ["+79167654321"]);
        // The card stays for the bookings' sake, with nothing personal on it.
        let card = c.get(&format!("/console/b/b1/clients/{c1}"), &max).await;
        assert_eq!(card.status, StatusCode::OK);
        assert!(card.body.contains("личные данные удалены"), "{}", card.body);
        assert!(
            !card.body.contains("Клиент k1")
                && !card.body.contains("123-45-67")
                && !card.body.contains("/forget"),
            "{}",
            card.body
        );

        // k2 waits for their delivery, and the card says so.
        let card = c.get(&format!("/console/b/b1/clients/{c2}"), &max).await;
        let a = c
            .post(
                &format!("/console/b/b1/clients/{c2}/forget"),
                &max,
                &[("csrf", &card.csrf())],
            )
            .await;
        assert_eq!(a.location, format!("/console/b/b1/clients/{c2}?waiting=1"));
        let after = c.get(&a.location, &max).await;
        assert!(
            after.body.contains("ещё 1 доставок в пути"),
            "{}",
            after.body
        );
        assert_eq!(phones(store.clone()).await, ["+79167654321"]);

        let journal = crate::sync::journal::read_journal(
            &store,
            &crate::sync::journal::JournalFilter::default(),
        )
        .await
        .unwrap();
        let outcomes: Vec<(&str, &str)> = journal
            .iter()
            .filter(|e| e.system == "console" && e.operation == "forget")
            .map(|e| (e.outcome.as_str(), e.error.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|(_, who)| who.starts_with("by max")),
            "{outcomes:?}"
        );
        assert!(outcomes.iter().any(|(o, _)| *o == "erased"));
        assert!(outcomes.iter().any(|(o, _)| *o == "waiting"));
        assert!(
            outcomes.iter().all(|(_, who)| !who.contains("9161234567")),
            "phones are masked in the journal: {outcomes:?}"
        );
    }
}
