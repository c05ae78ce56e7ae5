//! Who reaches what: sessions, sign-in, roles, one business against another, framing and caching.

use super::*;

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
                system: Some(System::Console),
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
