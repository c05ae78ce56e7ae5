//! Every query on a hot path (the dialog, "my bookings", reminders, both reconcilers, the queue
//! claim) is served by an index: checked on the plans both databases choose for a fresh store,
//! before any statistics exist.

use sqlx::{Any, Row};

use super::{Backend, Store, testing};

#[derive(Clone, Copy)]
pub(crate) enum Arg {
    Text(&'static str),
    Int(i64),
}

/// The plan lines of `sql` with `args`. PostgreSQL plans with sequential scans disabled, so a
/// `Seq Scan` left in the plan means no index can serve the query at all.
pub(crate) async fn plan(store: &Store, sql: &str, args: &[Arg]) -> Vec<String> {
    let mut conn = store.pool().acquire().await.expect("connection");
    let prefix = match store.backend() {
        Backend::Sqlite => "EXPLAIN QUERY PLAN ",
        Backend::Postgres => {
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .expect("set");
            "EXPLAIN "
        }
    };
    let text = format!("{prefix}{sql}");
    let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(text));
    for arg in args {
        q = match *arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(&mut *conn).await.expect("explain");
    if store.backend() == Backend::Postgres {
        sqlx::query("RESET enable_seqscan")
            .execute(&mut *conn)
            .await
            .expect("reset");
    }
    rows.iter()
        .map(|r| match store.backend() {
            Backend::Sqlite => r.try_get::<String, _>("detail").expect("detail"),
            Backend::Postgres => r.try_get::<String, _>(0).expect("plan line"),
        })
        .collect()
}

/// Why the plan reads a table whole, if it does: SQLite `SCAN`s a table (an index scan
/// without a search key is a full scan too); PostgreSQL has a `Seq Scan` or an index scan
/// without an index condition. A lookup keyed by the business alone reads every row of a
/// one-business deployment, so it counts as a full read as well. Sorting what keyed lookups
/// returned is fine.
pub(crate) fn full_read(backend: Backend, lines: &[String]) -> Option<String> {
    match backend {
        Backend::Sqlite => lines
            .iter()
            .map(|l| l.trim())
            // `SCAN (subquery…)`/`SCAN CONSTANT ROW` read results, not tables, and a
            // `VIRTUAL TABLE` scan (`json_each`) reads a parameter.
            .find(|l| {
                (l.starts_with("SCAN ")
                    && !l.starts_with("SCAN (")
                    && !l.starts_with("SCAN CONSTANT")
                    && !l.contains("VIRTUAL TABLE"))
                    || l.ends_with("(business_id=?)")
            })
            .map(str::to_string),
        Backend::Postgres => {
            if let Some(seq) = lines.iter().find(|l| {
                l.contains("Seq Scan") || l.trim_end().ends_with("Cond: (business_id = $1)")
            }) {
                return Some(seq.trim().to_string());
            }
            let scans = lines
                .iter()
                .filter(|l| l.contains("Index Scan") || l.contains("Index Only Scan"))
                .count();
            let conds = lines.iter().filter(|l| l.contains("Index Cond")).count();
            (conds < scans).then(|| "an index scan without an index condition".to_string())
        }
    }
}

pub(crate) async fn assert_indexed(store: &Store, name: &str, sql: &str, args: &[Arg]) {
    let lines = plan(store, sql, args).await;
    if let Some(why) = full_read(store.backend(), &lines) {
        panic!(
            "{name} reads a table whole on {:?} ({why}):\n{}",
            store.backend(),
            lines.join("\n")
        );
    }
}

/// Which reads of `table` in the plan are not keyed by any of `keys` (column names).
pub(crate) fn unkeyed_reads(
    backend: Backend,
    lines: &[String],
    table: &str,
    keys: &[&str],
) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        let (access, cond) = match backend {
            Backend::Sqlite => {
                // `SEARCH b USING INDEX bookings_by_chat (business_id=? AND chat_id=? …)`
                let names_table =
                    l.contains(&format!(" {table} ")) || l.contains(&format!("INDEX {table}_"));
                (l.starts_with("SEARCH") && names_table, l.to_string())
            }
            Backend::Postgres => {
                let access = l.contains(&format!(" on {table} "));
                let cond = lines[i + 1..]
                    .iter()
                    .find(|n| n.contains("Index Cond") || n.contains("Scan") || n.contains("->"))
                    .filter(|n| n.contains("Index Cond"))
                    .cloned()
                    .unwrap_or_default();
                (access, cond)
            }
        };
        if access && !keys.iter().any(|k| cond.contains(k)) {
            bad.push(format!("{l} / {}", cond.trim()));
        }
    }
    bad
}

/// A `Sort` (PostgreSQL) or temp b-tree (SQLite) in the plan.
pub(crate) async fn sorts(store: &Store, sql: &str, args: &[Arg]) -> bool {
    plan(store, sql, args).await.iter().any(|l| {
        l.contains("TEMP B-TREE") || l.trim_start().starts_with("Sort") || l.contains("->  Sort")
    })
}

/// 2,000 clients with 10 bookings each (one an hour, 20,000 hours around `NOW`), a chat each, and a sync
/// version and a CRM link per booking: enough rows that a plan reading them all looks
/// expensive. PostgreSQL gets statistics, as autovacuum would give it by then.
async fn fill(store: &Store) {
    let statements = [
        "WITH RECURSIVE g(x) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT x + 1 FROM g WHERE x < 2000) \
         INSERT INTO clients (id, business_id, phone, name, email, created_at, updated_at) \
         SELECT 'c' || x, 'b1', '+7916' || (1000000 + x), 'n', NULL, 0, 0 FROM g",
        "WITH RECURSIVE g(x) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT x + 1 FROM g WHERE x < 19999) \
         INSERT INTO bookings (id, business_id, client_id, service_id, service_name, master_id, \
           master_name, start_at, duration_min, price, status, source, source_payload, channel, \
           chat_id, external_id, created_at, updated_at, src_kind, src_label) \
         SELECT 'bk' || x, 'b1', 'c' || (x % 2000 + 1), 's', 's', 'm', 'm', \
           1900000000000 + (x - 10000) * 3600000, 60, 0, \
           CASE WHEN x % 7 = 0 THEN 'cancelled_by_client' ELSE 'booked' END, '{}', NULL, \
           'telegram', '' || (x % 2000 + 1), 'r' || x, 0, 0, 'direct', '' FROM g",
        "INSERT INTO booking_sync (business_id, booking_id, system, version, status, seen_at) \
         SELECT 'b1', id, 'yclients', 'v', 'booked', 0 FROM bookings",
        "INSERT INTO links (business_id, entity, entity_id, system, external_id, created_at) \
         SELECT 'b1', 'booking', id, 'amocrm', 'lead' || id, 0 FROM bookings",
    ];
    for sql in statements {
        sqlx::query(sql).execute(store.pool()).await.expect("fill");
    }
    if store.backend() == Backend::Postgres {
        sqlx::query("ANALYZE")
            .execute(store.pool())
            .await
            .expect("analyze");
    }
}

const B: Arg = Arg::Text("b1");
const NOW: Arg = Arg::Int(1_900_000_000_000);
/// A reminders round: the next day.
const LATER: Arg = Arg::Int(1_900_086_400_000);

#[tokio::test]
async fn every_hot_query_is_served_by_an_index() {
    use super::bookings::{
        active_between_sql, latest_chat_booking_sql, past_visits_sql, upcoming_sql,
    };
    let chat = [
        B,
        NOW,
        Arg::Text("telegram"),
        Arg::Text("42"),
        Arg::Text("+79161234567"),
    ];
    let mut past = chat.to_vec();
    past.push(Arg::Int(5));
    for store in testing::all().await {
        fill(&store).await;
        let cases: Vec<(&str, String, Vec<Arg>)> = vec![
            ("upcoming_bookings", upcoming_sql(), chat.to_vec()),
            ("past_visits", past_visits_sql(), past.clone()),
            (
                "active_bookings_between",
                active_between_sql(),
                vec![B, NOW, LATER],
            ),
            (
                "latest_chat_booking_of",
                latest_chat_booking_sql(),
                vec![B, Arg::Text("+79161234567")],
            ),
            (
                "known_versions",
                super::sync_state::KNOWN_VERSIONS_SQL.to_string(),
                vec![B, Arg::Text("yclients"), NOW, LATER],
            ),
            (
                "crm upcoming_linked",
                super::links::UPCOMING_LINKED_SQL.to_string(),
                vec![B, Arg::Text("amocrm"), NOW],
            ),
            (
                "load_turn",
                match store.backend() {
                    Backend::Sqlite => super::turn_reads::LOAD_TURNS_SQL,
                    Backend::Postgres => super::dialogs::LOAD_TURN_SQL,
                }
                .to_string(),
                match store.backend() {
                    Backend::Sqlite => vec![Arg::Text(
                        r#"[["b", "telegram:42", true], ["b", "telegram:43", false]]"#,
                    )],
                    Backend::Postgres => vec![B, Arg::Text("telegram:42")],
                },
            ),
        ];
        for (name, sql, args) in &cases {
            assert_indexed(&store, name, sql, args).await;
        }
        // "My bookings" reads only this chat's and this client's bookings, not the business's.
        for (name, sql, args) in &cases[..3.min(cases.len())] {
            if name.starts_with("active") {
                continue;
            }
            let lines = plan(&store, sql, args).await;
            let bad = unkeyed_reads(
                store.backend(),
                &lines,
                "bookings",
                &["chat_id", "client_id"],
            );
            assert!(
                bad.is_empty(),
                "{name} on {:?}: {bad:?}\n{}",
                store.backend(),
                lines.join("\n")
            );
        }
        // A chat's transcript (the CRM note of a booking, a support relay's context) reads
        // that chat's lines only, in the order they were said, without sorting them.
        let transcripts = [
            (
                "chat_lines",
                super::chat_log::CHAT_LINES_SQL,
                vec![B, Arg::Text("telegram:42"), NOW, LATER],
            ),
            (
                "last_chat_lines",
                super::chat_log::LAST_CHAT_LINES_SQL,
                vec![B, Arg::Text("telegram:42"), NOW, Arg::Int(20)],
            ),
        ];
        for (name, sql, args) in &transcripts {
            assert_indexed(&store, name, sql, args).await;
            let lines = plan(&store, sql, args).await;
            let bad = unkeyed_reads(store.backend(), &lines, "chat_log", &["chat_key"]);
            assert!(
                bad.is_empty(),
                "{name} on {:?}: {bad:?}\n{}",
                store.backend(),
                lines.join("\n")
            );
            assert!(
                !sorts(&store, sql, args).await,
                "{name} sorts on {:?}",
                store.backend()
            );
        }
        // Reminders and reconciliation read the window in start order straight off the index.
        assert!(
            !sorts(&store, &active_between_sql(), &[B, NOW, LATER]).await,
            "active_bookings_between sorts on {:?}",
            store.backend()
        );
    }
}

/// The check itself catches the shape it exists for: `chat OR phone` across the join.
#[tokio::test]
async fn an_or_across_the_join_is_caught_as_a_full_read() {
    let sql = "SELECT b.id FROM bookings b JOIN clients c ON c.id = b.client_id \
               WHERE b.business_id = $1 AND b.start_at >= $2 \
               AND ((b.channel = $3 AND b.chat_id = $4) OR c.phone = $5) ORDER BY b.start_at";
    let args = [
        B,
        NOW,
        Arg::Text("telegram"),
        Arg::Text("42"),
        Arg::Text("+79161234567"),
    ];
    for store in testing::all().await {
        fill(&store).await;
        sqlx::query("DROP INDEX bookings_by_start")
            .execute(store.pool())
            .await
            .unwrap();
        let lines = plan(&store, sql, &args).await;
        let keys = ["chat_id", "client_id"];
        assert!(
            !unkeyed_reads(store.backend(), &lines, "bookings", &keys).is_empty(),
            "{:?}:\n{}",
            store.backend(),
            lines.join("\n")
        );
    }
}

#[tokio::test]
async fn the_queue_claim_and_purge_are_served_by_indexes() {
    for store in testing::all().await {
        let queue = crate::sync::Queue::new(store.clone());
        let claim = queue.claim_sql(2, 1);
        let args = [
            Arg::Text("w1"),
            LATER,
            NOW,
            Arg::Int(16),
            Arg::Text("yclients"),
            Arg::Text("amocrm"),
            Arg::Text("b"),
        ];
        let lines = plan(&store, &claim, &args).await.join("\n");
        // The ordering-key check is one index probe per candidate, never an anti-join over
        // the table.
        assert!(!lines.contains("Anti Join"), "{lines}");
        if store.backend() == Backend::Postgres {
            // This store is fresh: no statistics, the case that used to read and sort every
            // pending job of the business and probe keys through the idempotency index.
            let walks = lines
                .lines()
                .filter(|l| l.contains("Index Scan using sync_jobs_due on sync_jobs j"))
                .count();
            assert_eq!(
                walks, 1,
                "one lateral walk, run once per business and system:\n{lines}"
            );
            // Led by the business: another business's backlog is never stepped over.
            assert!(
                lines.contains(
                    "Index Cond: ((business_id = b.business) AND (system = s.system) AND (run_at <="
                ),
                "{lines}"
            );
            assert!(
                lines.contains("Index Scan using sync_jobs_key on sync_jobs p")
                    || lines.contains("Index Only Scan using sync_jobs_key on sync_jobs p"),
                "the key probe:\n{lines}"
            );
            // The walks come in due order off the index and run in turn: nothing is sorted, so
            // the join stops (and stops locking) once the batch is full.
            assert!(!lines.contains("Sort"), "{lines}");
        } else {
            assert!(lines.contains("sync_jobs_order"), "{lines}");
        }
        if store.backend() == Backend::Sqlite {
            // Each system's pending jobs of the business are walked in due order along their own
            // index and the walk stops after a batch: nothing is sorted, neither the backlog nor
            // the batch, and another business's jobs are never read.
            let walks: Vec<&str> = lines
                .lines()
                .filter(|l| l.starts_with("SEARCH j "))
                .collect();
            assert_eq!(walks.len(), 2, "one walk per system:\n{lines}");
            assert!(
                walks
                    .iter()
                    .all(|l| l.contains("sync_jobs_due (business_id=? AND system=? AND run_at<?)")),
                "{lines}"
            );
            assert!(!lines.contains("TEMP B-TREE"), "{lines}");
        }
        assert_indexed(&store, "claim", &claim, &args).await;
        if store.backend() == Backend::Postgres {
            // A batch's completion, its journal rows and the next claim in one statement: the
            // completed jobs are found by primary key alone (never ANDed with a state index,
            // which holds every entry the state ever had), the claim walks as on its own.
            let fused = queue.finish_and_claim_sql(2, Some((2, 1)));
            let mut fused_args = args.to_vec();
            for id in [1, 2] {
                fused_args.extend([
                    Arg::Int(id),
                    Arg::Int(1),
                    NOW,
                    Arg::Text("b"),
                    Arg::Text("amocrm"),
                    Arg::Text("booking_created"),
                    Arg::Text("delivered"),
                    Arg::Int(200),
                    Arg::Int(15),
                    Arg::Text(""),
                ]);
            }
            let lines = plan(&store, &fused, &fused_args).await.join("\n");
            assert!(!lines.contains("BitmapAnd"), "{lines}");
            // Priced as the few rows it touches: past `jit_above_cost` every run would be
            // compiled first.
            assert!(!lines.contains("JIT"), "{lines}");
            assert!(!lines.contains("sync_jobs_lease"), "{lines}");
            assert!(lines.contains("sync_jobs_pkey"), "{lines}");
            assert!(
                lines.contains("Index Scan using sync_jobs_key on sync_jobs p")
                    || lines.contains("Index Only Scan using sync_jobs_key on sync_jobs p"),
                "the key probe:\n{lines}"
            );
            assert!(!lines.contains("Anti Join"), "{lines}");
            assert_indexed(&store, "finish_and_claim", &fused, &fused_args).await;
        }
        assert_indexed(
            &store,
            "purge_done",
            "DELETE FROM sync_jobs WHERE id IN (SELECT id FROM sync_jobs \
               WHERE state = 'done' AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
            &[NOW, Arg::Int(1000)],
        )
        .await;
    }
}

/// The Sources page reads one period of one business: the hourly roll-up of its chat events
/// and its bookings by creation time, whatever the grouping.
#[tokio::test]
async fn the_sources_funnel_reads_only_its_period() {
    use super::analytics::{Grouping, bookings_sql, chats_sql};
    for store in testing::all().await {
        fill(&store).await;
        sqlx::query(
            "WITH RECURSIVE g(x) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT x + 1 FROM g WHERE x < 19999) \
             INSERT INTO chat_events (business_id, chat_key, at, kind, channel, payload, link_name, \
               utm_source, utm_medium, utm_campaign) \
             SELECT 'b1', 'telegram:' || (x / 2), 1900000000000 + (x - 10000) * 360000, \
               CASE WHEN x % 2 = 0 THEN 'start' ELSE 'contact' END, 'telegram', \
               CASE WHEN x % 5 = 0 THEN 'src_' || (x % 7) END, NULL, NULL, NULL, NULL FROM g",
        )
        .execute(store.pool())
        .await
        .expect("events");
        sqlx::query(
            "INSERT INTO funnel_hours (business_id, hour, src_kind, src_label, started, reached) \
             SELECT business_id, at - at % 3600000, \
               CASE WHEN payload IS NULL THEN 'direct' ELSE 'payload' END, COALESCE(payload, ''), \
               SUM(CASE WHEN kind = 'start' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN kind = 'contact' THEN 1 ELSE 0 END) \
             FROM chat_events GROUP BY 1, 2, 3, 4",
        )
        .execute(store.pool())
        .await
        .expect("roll-up");
        if store.backend() == Backend::Postgres {
            sqlx::query("ANALYZE")
                .execute(store.pool())
                .await
                .expect("analyze");
        }
        let day = "((t + 10800000) / 86400000)";
        let series = Grouping::Series {
            bucket: day,
            filtered: true,
        };
        let period = vec![B, NOW, LATER];
        let mut one_source = period.clone();
        one_source.extend([Arg::Text("payload"), Arg::Text("src_1")]);
        let cases = [
            (
                "chats by source",
                chats_sql(Grouping::Source),
                &period,
                "funnel_hours",
            ),
            (
                "bookings by source",
                bookings_sql(Grouping::Source),
                &period,
                "bookings_funnel",
            ),
            (
                "chats by day",
                chats_sql(series),
                &one_source,
                "funnel_hours",
            ),
            (
                "bookings by day",
                bookings_sql(series),
                &one_source,
                "bookings_funnel",
            ),
        ];
        for (name, sql, args, index) in cases {
            assert_indexed(&store, name, &sql, args).await;
            let lines = plan(&store, &sql, args).await.join("\n");
            assert!(
                lines.contains(index),
                "{name} on {:?} does not use {index}:\n{lines}",
                store.backend()
            );
        }
    }
}
