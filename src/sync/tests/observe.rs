//! What the engine records and reports: the append-only journal, integration health and
//! outage alerts by email.

use super::*;
use crate::domain::bid;

#[tokio::test]
async fn the_journal_is_append_only() {
    for store in testing::all().await {
        let (_, _, _, engine) = rig(&store);
        engine.queue().enqueue(&job("k", None), t0()).await.unwrap();
        engine.run_due().await.unwrap();
        assert!(
            sqlx::query("UPDATE sync_journal SET outcome = 'x'")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert!(
            sqlx::query("DELETE FROM sync_journal")
                .execute(store.pool())
                .await
                .is_err()
        );
        assert_eq!(
            read_journal(&store, &JournalFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

/// `/health/ready` reads the engine's own records: an open outage (the system's, or a refused
/// credential) is down with its start and error, failures without one are degraded, and a
/// payload the system rejects leaves it up.
#[tokio::test]
async fn integration_health_is_down_while_an_outage_is_open() {
    for store in testing::all().await {
        let now = t0();
        let systems = vec![System::AmoCrm, System::Telegram, System::Yclients];
        let mut conn = store.pool().acquire().await.unwrap();
        for (system, outcome) in [
            (System::AmoCrm, "transient"),
            (System::Telegram, "delivered"),
            (System::Telegram, "transient"),
            (System::Yclients, "permanent"),
        ] {
            crate::sync::journal::insert_journal_in(
                &mut conn,
                &crate::sync::journal::JournalEntry {
                    at: now,
                    business_id: "b1".into(),
                    system,
                    operation: "op".into(),
                    job_id: 1,
                    attempt: 1,
                    outcome: outcome.into(),
                    http_status: None,
                    duration_ms: 5,
                    error: Some("boom".into()),
                },
            )
            .await
            .unwrap();
        }
        drop(conn);
        health::record_failure(
            &store,
            &bid("b1"),
            health::Outage::Down(System::AmoCrm),
            "HTTP 503",
            Duration::ZERO,
            now,
        )
        .await
        .unwrap();
        // Another business's outage is not ours.
        health::record_failure(
            &store,
            &bid("b2"),
            health::Outage::Down(System::Yclients),
            "HTTP 500",
            Duration::ZERO,
            now,
        )
        .await
        .unwrap();
        let later = now + chrono::Duration::minutes(5);
        let states = health::integration_health(
            &store,
            &bid("b1"),
            &systems,
            Duration::from_secs(3600),
            later,
        )
        .await
        .unwrap();
        let by = |s: System| states.iter().find(|h| h.system == s).unwrap().clone();
        let amo = by(System::AmoCrm);
        assert_eq!(amo.state, health::Health::Down);
        assert_eq!(amo.since, Some(now));
        assert_eq!(amo.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!((amo.delivered, amo.failed), (0, 1));
        assert_eq!(by(System::Telegram).state, health::Health::Degraded);
        assert_eq!(by(System::Yclients).state, health::Health::Up);

        // A refused credential is the system's outage too; a delivery ends both.
        health::record_success(
            &store,
            &bid("b1"),
            health::Outage::Down(System::AmoCrm),
            later,
        )
        .await
        .unwrap();
        health::record_failure(
            &store,
            &bid("b1"),
            health::Outage::Auth(System::AmoCrm),
            "HTTP 401",
            Duration::ZERO,
            later,
        )
        .await
        .unwrap();
        let states = health::integration_health(
            &store,
            &bid("b1"),
            &systems,
            Duration::from_secs(3600),
            later,
        )
        .await
        .unwrap();
        assert_eq!(states[0].state, health::Health::Down);
        assert_eq!(states[0].last_error.as_deref(), Some("HTTP 401"));
        health::record_success(
            &store,
            &bid("b1"),
            health::Outage::Auth(System::AmoCrm),
            later,
        )
        .await
        .unwrap();
        let states = health::integration_health(
            &store,
            &bid("b1"),
            &systems,
            Duration::from_secs(3600),
            later,
        )
        .await
        .unwrap();
        assert_eq!(states[0].state, health::Health::Degraded);
        assert_eq!(states[0].since, None);
    }
}

/// A minimal SMTP server for one test: answers the dialogue lettre speaks over a plain
/// connection and keeps every message's envelope recipients and DATA text.
async fn fake_smtp() -> (u16, Arc<Mutex<Vec<(Vec<String>, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await?;
                let mut rcpt = Vec::new();
                while let Some(line) = lines.next_line().await? {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "RCPT" => {
                            rcpt.push(line[4..].trim().to_string());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 end with .\r\n").await?;
                            let mut data = String::new();
                            while let Some(l) = lines.next_line().await? {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            kept.lock().unwrap().push((std::mem::take(&mut rcpt), data));
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    write.write_all(answer).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (port, mails)
}

#[tokio::test]
async fn an_outage_alert_arrives_as_one_email_naming_the_system_in_its_subject() {
    for store in testing::all().await {
        let (port, mails) = fake_smtp().await;
        let email: EmailAlertsConfig = serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": "Zapis <alerts@salon.example>",
            "to": ["owner@salon.example", "ops@agency.example"],
        }))
        .unwrap();
        email.validate().unwrap();
        let clock = Arc::new(FakeClock::new(t0()));
        let target = Scripted::new(clock.clone());
        *target.down_until.lock().unwrap() = t0() + chrono::Duration::hours(3);
        let sink = MemorySink::default();
        let mut engine = Engine::new(
            store.clone(),
            clock.clone(),
            SyncConfig::default(),
            Alerts::new(vec![
                Arc::new(sink.clone()),
                Arc::new(EmailSink::new(&email).unwrap()),
            ]),
            &bid("b"),
        );
        engine.register(System::AmoCrm, target);
        engine
            .queue()
            .enqueue(&job("k0", None), t0())
            .await
            .unwrap();
        drive(&engine, &clock, t0() + chrono::Duration::minutes(150), &[]).await;

        assert_eq!(
            sink.alerts().iter().map(|a| a.kind).collect::<Vec<_>>(),
            vec![AlertKind::Down]
        );
        let mails = mails.lock().unwrap().clone();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let (rcpt, data) = &mails[0];
        assert_eq!(
            rcpt,
            &["<owner@salon.example>", "<ops@agency.example>"]
                .map(|r| format!("TO:{r}"))
                .to_vec(),
            "{rcpt:?}"
        );
        let subject = data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("a subject in {data}"));
        assert_eq!(subject, "zapis: amocrm is down (b)");
        assert!(
            data.contains("From: Zapis <alerts@salon.example>"),
            "{data}"
        );
        assert!(
            data.contains("HTTP 503"),
            "the last error in the body: {data}"
        );
    }
}
