//! Incoming webhooks: stored once, without secrets, and processed once.

use super::*;
use crate::domain::bid;

struct CountingInbox(Mutex<Vec<String>>);

#[async_trait]
impl InboxHandler for CountingInbox {
    async fn process(
        &self,
        message: &InboxMessage,
        _ctx: &JobContext<'_>,
    ) -> Result<Delivered, DeliveryError> {
        self.0.lock().unwrap().push(message.body.clone());
        Ok(Delivered::done())
    }
}

#[tokio::test]
async fn a_webhook_received_twice_is_stored_without_secrets_and_processed_once() {
    for store in testing::all().await {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), "Bearer secret".to_string());
        headers.insert("x-event-id".to_string(), "ev1".to_string());
        let first = inbox::receive(
            &store,
            &bid("b"),
            "yclients",
            "ev1",
            &headers,
            "{\"a\":1}",
            t0(),
        )
        .await
        .unwrap();
        let second = inbox::receive(
            &store,
            &bid("b"),
            "yclients",
            "ev1",
            &headers,
            "{\"a\":1}",
            t0(),
        )
        .await
        .unwrap();
        let Received::New(id) = first else {
            panic!("first delivery must be new")
        };
        assert_eq!(second, Received::Duplicate);
        let stored = inbox::message(&store, &bid("b"), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.headers.keys().collect::<Vec<_>>(),
            vec!["x-event-id"]
        );

        let handler = Arc::new(CountingInbox(Mutex::new(Vec::new())));
        let mut dispatcher = InboxDispatcher::default();
        dispatcher.register("yclients", handler.clone());
        let clock = Arc::new(FakeClock::new(t0()));
        let mut engine = Engine::new(
            store.clone(),
            clock,
            SyncConfig::default(),
            Alerts::default(),
            &bid("b"),
        );
        engine.register(inbox::INBOX_SYSTEM, Arc::new(dispatcher));
        engine.run_due().await.unwrap();
        engine.run_due().await.unwrap();
        assert_eq!(*handler.0.lock().unwrap(), vec!["{\"a\":1}".to_string()]);
    }
}
