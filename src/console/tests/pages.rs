//! What the pages show and do: retries, bookings and their cards, tracked links, forgetting a
//! client.

use super::*;
use crate::domain::bid;

#[tokio::test]
async fn retry_needs_the_session_token_and_is_journaled_with_who() {
    for store in testing::all().await {
        let c = console(store.clone()).await;
        let queue = Queue::new(store.clone());
        let job = NewJob {
            business_id: bid("b1"),
            system: System::AmoCrm,
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
            &bid("b1"),
            &crate::domain::bk("k1"),
            System::AmoCrm,
            "cancelled_by_business|0|m1",
            "cancelled_by_business",
            start(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store
            .log_chat(
                &bid("b1"),
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
                &bid("b1"),
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
        let links = store.tracked_links(&bid("b1")).await.unwrap();
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
        assert_eq!(store.tracked_links(&bid("b1")).await.unwrap().len(), 1);
    }
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
                    business_id: bid("b1"),
                    system: System::AmoCrm,
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
