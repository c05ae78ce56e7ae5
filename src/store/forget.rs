//! A client's right to be forgotten (152-ФЗ, art. 21): `zapis forget PHONE` erases what our
//! store holds about the person behind a phone number: their client card, the chats they had
//! with the bot (dialog state and transcript), the chat link and comments of their bookings,
//! stored webhook bodies and finished job payloads that mention them, import rows and school
//! applications, and the bookings they left unfinished; their chats' funnel events stay counted
//! under a key that names no chat.
//! Bookings stay as anonymous visits (the business's statistics), and the CRM and the schedule
//! keep what the business owns there. While a delivery about the client is still on its way,
//! erasing would leave it without its data, so the request is recorded and carried out right
//! after the delivery ends; the journal records each erasure with the phone masked.

use crate::domain::BusinessId;
use crate::domain::System;
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::{Store, StoreError, to_millis};
use crate::normalize::Phone;
use crate::sync::journal::{JournalEntry, insert_journal_in};

/// What an erased client's phone becomes: unique per card (phones are unique per business),
/// and read back as [`Phone::erased`].
pub(crate) const ERASED_PHONE_PREFIX: &str = "forgotten:";

/// What one erasure touched, table by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub clients: u64,
    pub bookings: u64,
    pub dialogs: u64,
    pub chat_lines: u64,
    pub webhook_bodies: u64,
    pub job_payloads: u64,
    pub import_rows: u64,
    pub applications: u64,
    pub funnel_events: u64,
    pub unfinished_bookings: u64,
}

impl std::fmt::Display for Erased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client card: {}; bookings unlinked from the chat: {}; dialogs: {}; chat lines: {}; \
             webhook bodies: {}; job payloads: {}; import rows: {}; school applications: {}; \
             funnel events unlinked from the chat: {}; unfinished bookings: {}",
            self.clients,
            self.bookings,
            self.dialogs,
            self.chat_lines,
            self.webhook_bodies,
            self.job_payloads,
            self.import_rows,
            self.applications,
            self.funnel_events,
            self.unfinished_bookings
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgot {
    /// Erased now.
    Erased(Erased),
    /// Deliveries about the client are still on their way; the erasure waits for them.
    Waiting { deliveries: i64 },
}

/// How the rows that mention one person are found.
struct Person {
    business: BusinessId,
    phone: Phone,
    /// `%9123456789%`: the number however it was written without separators.
    digits_like: String,
    /// `%anna@mail.ru%` for each e-mail address we hold for them.
    emails_like: Vec<String>,
    /// Ordering keys of their jobs: `booking:…`, `chat:…`, `customer:+7…`.
    job_keys: Vec<String>,
    /// `telegram:42`, … : their chats.
    chats: Vec<String>,
    bookings: Vec<String>,
}

impl Person {
    /// `col LIKE $digits OR col LIKE $email…`, with the binds numbered from `first`.
    fn mentions(&self, col: &str, first: usize) -> (String, Vec<String>) {
        let mut binds = vec![self.digits_like.clone()];
        binds.extend(self.emails_like.iter().cloned());
        let sql = (0..binds.len())
            .map(|i| format!("{col} LIKE ${}", first + i))
            .collect::<Vec<_>>()
            .join(" OR ");
        (format!("({sql})"), binds)
    }

    /// `col IN ($first, …)` over `values`, or a condition that is false when there are none.
    fn any_of(col: &str, values: &[String], first: usize) -> String {
        if values.is_empty() {
            return "1 = 0".into();
        }
        let marks: Vec<String> = (0..values.len())
            .map(|i| format!("${}", first + i))
            .collect();
        format!("{col} IN ({})", marks.join(", "))
    }
}

async fn texts(
    conn: &mut AnyConnection,
    sql: &str,
    binds: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()));
    for b in binds {
        q = q.bind(b.clone());
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

async fn run(conn: &mut AnyConnection, sql: String, binds: Vec<String>) -> Result<u64, StoreError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(b);
    }
    Ok(q.execute(&mut *conn).await?.rows_affected())
}

async fn person(
    conn: &mut AnyConnection,
    business: &BusinessId,
    phone: &Phone,
) -> Result<Person, StoreError> {
    let who = vec![business.to_string(), phone.as_str().to_string()];
    let mut emails = texts(
        conn,
        "SELECT email FROM clients WHERE business_id = $1 AND phone = $2 AND email IS NOT NULL \
         UNION SELECT email FROM school_applications \
           WHERE business_id = $1 AND phone = $2 AND email IS NOT NULL",
        &who,
    )
    .await?;
    emails.retain(|e| !e.trim().is_empty());
    let bookings = texts(
        conn,
        "SELECT b.id FROM bookings b JOIN clients c ON c.id = b.client_id \
         WHERE c.business_id = $1 AND c.phone = $2 AND b.business_id = $1",
        &who,
    )
    .await?;
    let digits_like = format!("%{}%", phone.national_digits());
    // Their chats: those of their bookings, and any where they typed or shared the number
    // without booking.
    let chats = texts(
        conn,
        "SELECT b.channel || ':' || b.chat_id FROM bookings b JOIN clients c ON c.id = b.client_id \
         WHERE c.business_id = $1 AND c.phone = $2 AND b.business_id = $1 \
           AND b.chat_id IS NOT NULL \
         UNION SELECT chat_key FROM dialogs WHERE business_id = $1 AND state LIKE $3 \
         UNION SELECT chat_key FROM chat_log WHERE business_id = $1 AND text LIKE $3 \
         UNION SELECT chat_key FROM unfinished_bookings WHERE business_id = $1 AND draft LIKE $3",
        &[
            business.to_string(),
            phone.as_str().to_string(),
            digits_like.clone(),
        ],
    )
    .await?;
    let mut job_keys: Vec<String> = bookings.iter().map(|b| format!("booking:{b}")).collect();
    job_keys.extend(chats.iter().map(|c| format!("chat:{c}")));
    job_keys.push(format!("customer:{}", phone.as_str()));
    Ok(Person {
        business: business.clone(),
        phone: phone.clone(),
        digits_like,
        emails_like: emails.iter().map(|e| format!("%{e}%")).collect(),
        job_keys,
        chats,
        bookings,
    })
}

/// Deliveries about `p` not finished yet: jobs keyed by their booking, chat or number, jobs
/// whose payload mentions them, and stored webhooks about them not yet processed.
async fn deliveries_on_the_way(conn: &mut AnyConnection, p: &Person) -> Result<i64, StoreError> {
    let (payload, mut binds) = p.mentions("j.payload", 2);
    let (body, body_binds) = p.mentions("i.body", 2 + binds.len());
    binds.extend(body_binds);
    let keys = Person::any_of("j.ordering_key", &p.job_keys, 2 + binds.len());
    binds.extend(p.job_keys.iter().cloned());
    let sql = format!(
        "SELECT COUNT(*) FROM sync_jobs j WHERE j.business_id = $1 \
           AND j.state IN ('pending', 'running') \
           AND ({payload} OR {keys} OR (j.system = 'inbox' AND EXISTS ( \
             SELECT 1 FROM sync_inbox i WHERE i.business_id = j.business_id \
               AND j.idempotency_key = i.source || ':' || i.dedup_key AND {body})))"
    );
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(p.business.as_str());
    for b in binds {
        q = q.bind(b);
    }
    Ok(q.fetch_one(&mut *conn).await?)
}

async fn erase(conn: &mut AnyConnection, p: &Person) -> Result<Erased, StoreError> {
    let mut e = Erased::default();
    let b = || vec![p.business.to_string()];
    let with = |mut v: Vec<String>, more: &[String]| {
        v.extend(more.iter().cloned());
        v
    };

    let chats = Person::any_of("chat_key", &p.chats, 2);
    e.dialogs = run(
        conn,
        format!("DELETE FROM dialogs WHERE business_id = $1 AND {chats}"),
        with(b(), &p.chats),
    )
    .await?;
    e.chat_lines = run(
        conn,
        format!("DELETE FROM chat_log WHERE business_id = $1 AND {chats}"),
        with(b(), &p.chats),
    )
    .await?;
    // What they had chosen and given in a booking they did not finish (its lead, if any,
    // is the CRM's).
    e.unfinished_bookings = run(
        conn,
        format!("DELETE FROM unfinished_bookings WHERE business_id = $1 AND {chats}"),
        with(b(), &p.chats),
    )
    .await?;
    // Which admin-chat posts relayed their questions: an admin's late reply to one then finds
    // no chat to go to.
    run(
        conn,
        format!("DELETE FROM support_relays WHERE business_id = $1 AND {chats}"),
        with(b(), &p.chats),
    )
    .await?;
    // The funnel keeps counting the chat, under a key of its own that leads to no one.
    for chat in &p.chats {
        e.funnel_events += run(
            conn,
            "UPDATE chat_events SET chat_key = $3 WHERE business_id = $1 AND chat_key = $2".into(),
            vec![
                p.business.to_string(),
                chat.clone(),
                format!("forgotten:{}", super::new_id()),
            ],
        )
        .await?;
    }
    // The visit stays for the business's figures; the way to reach the person goes.
    e.bookings = run(
        conn,
        format!(
            "UPDATE bookings SET chat_id = NULL, client_comment = NULL \
             WHERE business_id = $1 AND {}",
            Person::any_of("id", &p.bookings, 2)
        ),
        with(b(), &p.bookings),
    )
    .await?;
    // The card stays (bookings refer to it) with nothing personal left on it.
    e.clients = run(
        conn,
        format!(
            "UPDATE clients SET phone = '{ERASED_PHONE_PREFIX}' || id, name = '', email = NULL, \
               consent_at = NULL, consent_version = NULL \
             WHERE business_id = $1 AND phone = $2"
        ),
        with(b(), &[p.phone.as_str().to_string()]),
    )
    .await?;
    let (body, binds) = p.mentions("body", 2);
    e.webhook_bodies = run(
        conn,
        format!(
            "UPDATE sync_inbox SET body = '', headers = '{{}}' WHERE business_id = $1 AND {body}"
        ),
        with(b(), &binds),
    )
    .await?;
    let (payload, mut binds) = p.mentions("payload", 2);
    let keys = Person::any_of("ordering_key", &p.job_keys, 2 + binds.len());
    binds.extend(p.job_keys.iter().cloned());
    e.job_payloads = run(
        conn,
        format!(
            "UPDATE sync_jobs SET payload = '{{}}' WHERE business_id = $1 \
               AND state IN ('done', 'dead') AND ({payload} OR {keys})"
        ),
        with(b(), &binds),
    )
    .await?;
    let (payload, binds) = p.mentions("payload", 3);
    e.import_rows = run(
        conn,
        format!(
            "DELETE FROM import_rows WHERE run_id IN \
               (SELECT id FROM import_runs WHERE business_id = $1) \
               AND (key = $2 OR {payload})"
        ),
        with(with(b(), &[format!("phone:{}", p.phone.as_str())]), &binds),
    )
    .await?;
    e.applications = run(
        conn,
        "UPDATE school_applications SET phone = 'forgotten:' || id, name = '', email = NULL \
         WHERE business_id = $1 AND phone = $2"
            .into(),
        with(b(), &[p.phone.as_str().to_string()]),
    )
    .await?;
    run(
        conn,
        "DELETE FROM sandbox_records WHERE business_id = $1 AND client_phone = $2".into(),
        with(b(), &[p.phone.as_str().to_string()]),
    )
    .await?;
    let (detail, binds) = p.mentions("detail", 2);
    run(
        conn,
        format!("UPDATE booking_events SET detail = '' WHERE business_id = $1 AND {detail}"),
        with(b(), &binds),
    )
    .await?;
    Ok(e)
}

impl Store {
    /// Erases what the store holds about the person with `phone` in `business`, or records the
    /// request to be carried out once their deliveries end (see [`Store::run_waiting_erasures`]).
    pub async fn forget(
        &self,
        business: &BusinessId,
        phone: &Phone,
        now: DateTime<Utc>,
    ) -> Result<Forgot, StoreError> {
        let mut tx = self.begin().await?;
        let p = person(&mut tx, business, phone).await?;
        let deliveries = deliveries_on_the_way(&mut tx, &p).await?;
        if deliveries > 0 {
            sqlx::query(
                "INSERT INTO erasure_requests (business_id, phone, requested_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (business_id, phone) DO NOTHING",
            )
            .bind(business.as_str())
            .bind(phone.as_str())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Forgot::Waiting { deliveries });
        }
        let erased = erase(&mut tx, &p).await?;
        finish(&mut tx, &p, &erased, now).await?;
        tx.commit().await?;
        Ok(Forgot::Erased(erased))
    }

    /// Carries out the recorded requests of `business` whose deliveries have ended. Returns
    /// how many were carried out.
    pub async fn run_waiting_erasures(
        &self,
        business: &BusinessId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let phones: Vec<String> =
            sqlx::query_scalar("SELECT phone FROM erasure_requests WHERE business_id = $1")
                .bind(business.as_str())
                .fetch_all(&self.pool)
                .await?;
        let mut done = 0;
        for phone in phones {
            let Ok(phone) = Phone::parse(&phone) else {
                continue;
            };
            if let Forgot::Erased(_) = self.forget(business, &phone, now).await? {
                done += 1;
            }
        }
        Ok(done)
    }
}

/// Journals the erasure (the phone masked) and drops a recorded request for it.
async fn finish(
    conn: &mut AnyConnection,
    p: &Person,
    e: &Erased,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM erasure_requests WHERE business_id = $1 AND phone = $2")
        .bind(p.business.as_str())
        .bind(p.phone.as_str())
        .execute(&mut *conn)
        .await?;
    let entry = JournalEntry {
        at: now,
        business_id: p.business.to_string(),
        system: System::Store,
        operation: "forget".into(),
        job_id: 0,
        attempt: 0,
        outcome: "erased".into(),
        http_status: None,
        duration_ms: 0,
        error: Some(format!(
            "client {} erased on request; {e}",
            p.phone.masked()
        )),
    };
    insert_journal_in(conn, &entry).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::{FunnelStep, TurnEvent, testing};
    use crate::sync::jobs::{NewJob, Queue};

    async fn exec(store: &Store, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(store.pool())
            .await
            .expect("exec");
    }

    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(store.pool())
            .await
            .expect("count")
    }

    /// The same erasure on both databases: a pending job about the client makes it wait; once
    /// that job is done, the card, chats and mentions go and the other client's stay.
    #[tokio::test]
    async fn an_erasure_waits_for_the_clients_deliveries_then_leaves_nothing_of_them() {
        for store in testing::all().await {
            let now = Utc::now();
            for (id, phone, name, chat) in [
                ("c1", "+79165551234", "Ефросинья", "100"),
                ("c2", "+79123456789", "Анна", "200"),
            ] {
                exec(
                    &store,
                    &format!(
                        "INSERT INTO clients (id, business_id, phone, name, email, created_at, \
                           updated_at) VALUES ('{id}', 'b1', '{phone}', '{name}', \
                           '{id}@mail.ru', 0, 0)"
                    ),
                )
                .await;
                exec(
                    &store,
                    &format!(
                        "INSERT INTO bookings (id, business_id, client_id, service_id, \
                           service_name, master_id, master_name, start_at, duration_min, price, \
                           status, source, source_payload, channel, chat_id, external_id, \
                           created_at, updated_at) VALUES ('bk-{id}', 'b1', '{id}', 's', 's', \
                           'm', 'm', 0, 60, 0, 'booked', '{{\"channel\":\"telegram\"}}', NULL, 'telegram', '{chat}', \
                           NULL, 0, 0)"
                    ),
                )
                .await;
                let key = format!("telegram:{chat}");
                store
                    .log_chat(&bid("b1"), &key, now, "client", phone, None)
                    .await
                    .expect("log");
                // The dialog state is written after these turns, as the last turn's.
                let source = crate::domain::Source::direct(crate::domain::Channel::Telegram);
                for step in [FunnelStep::Start, FunnelStep::Contact] {
                    let event = TurnEvent {
                        step,
                        source: &source,
                    };
                    store
                        .save_turn(&bid("b1"), &key, &[], Some(event), "{}", now)
                        .await
                        .expect("turn");
                }
                store
                    .save_dialog(&bid("b1"), &key, &format!("{{\"name\":\"{name}\"}}"), now)
                    .await
                    .expect("dialog");
            }
            exec(
                &store,
                "UPDATE bookings SET client_comment = 'позвоните после 18' WHERE id = 'bk-c1'",
            )
            .await;
            let queue = Queue::new(store.clone());
            let job = queue
                .enqueue(
                    &NewJob {
                        business_id: bid("b1"),
                        system: System::AmoCrm,
                        operation: "booking_created".into(),
                        payload: serde_json::json!({ "booking_id": "bk-c1" }),
                        idempotency_key: "bk-c1:created".into(),
                        ordering_key: Some("booking:bk-c1".into()),
                    },
                    now,
                )
                .await
                .expect("enqueue")
                .expect("new");
            let phone = Phone::parse("8 916 555 12 34").expect("phone");
            assert_eq!(
                store.forget(&bid("b1"), &phone, now).await.expect("forget"),
                Forgot::Waiting { deliveries: 1 }
            );
            assert_eq!(
                store
                    .run_waiting_erasures(&bid("b1"), now)
                    .await
                    .expect("run"),
                0
            );
            assert_eq!(
                count(
                    &store,
                    "SELECT COUNT(*) FROM clients WHERE name = 'Ефросинья'"
                )
                .await,
                1
            );
            exec(
                &store,
                &format!("UPDATE sync_jobs SET state = 'done' WHERE id = {job}"),
            )
            .await;
            assert_eq!(
                store
                    .run_waiting_erasures(&bid("b1"), now)
                    .await
                    .expect("run"),
                1
            );
            for (sql, left) in [
                (
                    "SELECT COUNT(*) FROM clients WHERE phone LIKE '%9165551234%' OR name = 'Ефросинья' OR email = 'c1@mail.ru'",
                    0,
                ),
                (
                    "SELECT COUNT(*) FROM chat_log WHERE text LIKE '%9165551234%'",
                    0,
                ),
                (
                    "SELECT COUNT(*) FROM dialogs WHERE state LIKE '%Ефросинья%'",
                    0,
                ),
                ("SELECT COUNT(*) FROM bookings WHERE chat_id = '100'", 0),
                (
                    "SELECT COUNT(*) FROM bookings WHERE client_comment IS NOT NULL",
                    0,
                ),
                (
                    "SELECT COUNT(*) FROM sync_jobs WHERE payload LIKE '%bk-c1%'",
                    0,
                ),
                ("SELECT COUNT(*) FROM erasure_requests", 0),
                ("SELECT COUNT(*) FROM bookings", 2),
                ("SELECT COUNT(*) FROM clients WHERE name = 'Анна'", 1),
                (
                    "SELECT COUNT(*) FROM chat_log WHERE text = '+79123456789'",
                    1,
                ),
                ("SELECT COUNT(*) FROM dialogs", 1),
                (
                    "SELECT COUNT(*) FROM chat_events WHERE chat_key = 'telegram:100'",
                    0,
                ),
                // Still counted, as one chat.
                ("SELECT COUNT(*) FROM chat_events", 4),
                (
                    "SELECT COUNT(DISTINCT chat_key) FROM chat_events \
                     WHERE chat_key LIKE 'forgotten:%'",
                    1,
                ),
                (
                    "SELECT COUNT(*) FROM chat_events WHERE chat_key = 'telegram:200'",
                    2,
                ),
                (
                    "SELECT COUNT(*) FROM sync_journal WHERE operation = 'forget'",
                    1,
                ),
            ] {
                assert_eq!(
                    count(&store, sql).await,
                    left,
                    "{sql} on {:?}",
                    store.backend()
                );
            }
            // The erased client's booking still loads, for reminders, reconciliation and the
            // console alike, with no phone or name left to show.
            let all = store.bookings(&bid("b1")).await.expect("bookings load");
            assert_eq!(all.len(), 2);
            let erased = store
                .booking(&bid("b1"), &crate::domain::bk("bk-c1"))
                .await
                .expect("loads")
                .expect("kept");
            assert!(erased.client_phone.is_erased(), "{:?}", erased.client_phone);
            assert_eq!(erased.client_phone.formatted(), "—");
            assert_eq!(erased.client_name, "");
            assert!(erased.chat.is_none());
            let (card, bookings) = store
                .client_with_bookings(&bid("b1"), "c1")
                .await
                .expect("the card loads")
                .expect("the card stays");
            assert!(card.phone.is_erased() && card.name.is_empty());
            assert_eq!(bookings.len(), 1);
        }
    }
}
