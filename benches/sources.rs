//! The Sources page's queries on a busy store: 100,000 bookings and 1,000,000 chat events over
//! 90 days across 51 sources, on SQLite and — when ZAPIS_TEST_POSTGRES_URL is set —
//! PostgreSQL in a fresh schema (vacuumed and analysed, as autovacuum would have it by then).
//! `cargo bench --bench sources`; ZAPIS_BENCH_ROUNDS sets the rounds (default 7).
//!
//! The shape: one business; 70 % of chats direct, 15 % through ten tracked links (with UTM
//! tags), 15 % through thirty raw payloads; every chat starts, three in ten reach the contact
//! step (1M events: 770k starts, 230k contacts); bookings come from the same mix plus ten
//! web-form UTM sets, 60 % visited, 15 % cancelled, 5 % no-shows, the rest booked. Events and
//! bookings are spread evenly over the 90 days, written in time order as they would be.
//!
//! Timed, interleaved within each round: `source_funnel` over the last 30 days, and
//! `funnel_series` by day over the same 30 days in Moscow time (the page shows both), beside a
//! floor: `SELECT COUNT(*)` of the rows the page reads (the hourly roll-up of chat events and
//! the bookings' index), the least any query reading them can cost. Then the page itself as `zapis run` serves it: the console's router asked for
//! the Sources page of the same month with a marketer's session, rendered to the last byte.
//! Figures: milliseconds, min / median / max over the rounds.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use zapis::store::analytics::source_funnel_sql;
use zapis::store::test_support::raw_pool;
use zapis::store::{Backend, Bucket, Store};

const BUSINESS: &str = "b1";
const EVENTS: i64 = 1_000_000;
const BOOKINGS: i64 = 100_000;
const CLIENTS: i64 = 50_000;
const DAYS: i64 = 90;
const DAY_MS: i64 = 86_400_000;

fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .expect("instant")
}

/// `x`'s chat (events) or booking: its source class from a scrambled number, 0..99.
const MIX: &str = "((((c / 10) * 7919) + c % 10) % 100)";

/// Rows `0..n` as `x`: `generate_series` on PostgreSQL, a recursive CTE on SQLite.
fn numbers(backend: Backend, n: i64) -> String {
    match backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < {}) ",
            n - 1
        ),
        Backend::Postgres => format!(
            "WITH g(x) AS (SELECT CAST(x AS BIGINT) FROM generate_series(0, {}) AS s(x)) ",
            n - 1
        ),
    }
}

async fn fill(store: &Store) {
    let backend = store.backend();
    let t0 = end().timestamp_millis() - DAYS * DAY_MS;
    let events_step = DAYS * DAY_MS / EVENTS;
    let bookings_step = DAYS * DAY_MS / BOOKINGS;
    let mut sql = vec![
        format!(
            "{} INSERT INTO clients (id, business_id, phone, name, email, created_at, updated_at) \
             SELECT 'c' || x, '{BUSINESS}', '+7916' || (1000000 + x), 'n', NULL, 0, 0 FROM g",
            numbers(backend, CLIENTS)
        ),
        format!(
            "INSERT INTO tracked_links (business_id, token, name, utm, created_at) {} \
             SELECT '{BUSINESS}', 'lnk_' || x, 'Link ' || x, \
               '{{\"source\":\"vk\",\"medium\":\"cpc\",\"campaign\":\"c' || x || '\"}}', 0 \
             FROM g",
            numbers(backend, 10)
        ),
    ];
    // Seven in ten events start a chat; the other three are the contact step of the first
    // three chats of their ten.
    sql.push(format!(
        "{nums}, e(x, c) AS (SELECT x, x - x % 10 + (x % 10) % 7 FROM g) \
         INSERT INTO chat_events (business_id, chat_key, at, kind, channel, payload, link_name, \
           utm_source, utm_medium, utm_campaign) \
         SELECT '{BUSINESS}', 'telegram:' || c, {t0} + x * {events_step}, \
           CASE WHEN x % 10 < 7 THEN 'start' ELSE 'contact' END, 'telegram', \
           CASE WHEN {MIX} >= 85 THEN 'src_' || (c % 30) \
                WHEN {MIX} >= 70 THEN 'lnk_' || (c % 10) END, \
           CASE WHEN {MIX} >= 70 AND {MIX} < 85 THEN 'Link ' || (c % 10) END, \
           CASE WHEN {MIX} >= 70 AND {MIX} < 85 THEN 'vk' END, \
           CASE WHEN {MIX} >= 70 AND {MIX} < 85 THEN 'cpc' END, \
           CASE WHEN {MIX} >= 70 AND {MIX} < 85 THEN 'c' || (c % 10) END \
         FROM e",
        nums = numbers(backend, EVENTS)
    ));
    sql.push(format!(
        "{nums}, e(x, c) AS (SELECT x, x FROM g) \
         INSERT INTO bookings (id, business_id, client_id, service_id, service_name, master_id, \
           master_name, start_at, duration_min, price, status, source, source_payload, channel, \
           chat_id, external_id, created_at, updated_at, src_kind, src_label) \
         SELECT 'bk' || x, '{BUSINESS}', 'c' || (x % {CLIENTS}), 's' || (x % 7), 'Стрижка', \
           'm' || (x % 5), 'Ольга', {t0} + x * {bookings_step} + 3 * {DAY_MS}, 60, \
           100000 + (x % 40) * 10000, \
           CASE WHEN x % 20 < 12 THEN 'visited' WHEN x % 20 < 15 THEN 'cancelled_by_client' \
                WHEN x % 20 < 16 THEN 'no_show' ELSE 'booked' END, \
           CASE WHEN {MIX} >= 95 THEN '{{\"channel\":\"web_form\",\"utm\":{{\"source\":\"yandex\",\"medium\":\"cpc\",\"campaign\":\"w' || (c % 10) || '\"}}}}' \
                WHEN {MIX} >= 85 THEN '{{\"channel\":\"telegram\",\"payload\":\"src_' || (c % 30) || '\"}}' \
                WHEN {MIX} >= 70 THEN '{{\"channel\":\"telegram\",\"payload\":\"lnk_' || (c % 10) || '\",\"link_name\":\"Link ' || (c % 10) || '\",\"utm\":{{\"source\":\"vk\",\"medium\":\"cpc\",\"campaign\":\"c' || (c % 10) || '\"}}}}' \
                ELSE '{{\"channel\":\"telegram\"}}' END, \
           CASE WHEN {MIX} >= 95 THEN NULL WHEN {MIX} >= 85 THEN 'src_' || (c % 30) \
                WHEN {MIX} >= 70 THEN 'lnk_' || (c % 10) END, \
           'telegram', '' || x, NULL, {t0} + x * {bookings_step}, {t0} + x * {bookings_step}, \
           CASE WHEN {MIX} >= 95 THEN 'utm' WHEN {MIX} >= 85 THEN 'payload' \
                WHEN {MIX} >= 70 THEN 'link' ELSE 'direct' END, \
           CASE WHEN {MIX} >= 95 THEN 'yandex / cpc / w' || (c % 10) \
                WHEN {MIX} >= 85 THEN 'src_' || (c % 30) \
                WHEN {MIX} >= 70 THEN 'Link ' || (c % 10) ELSE '' END \
         FROM e",
        nums = numbers(backend, BOOKINGS)
    ));
    // What the turns keep as they record the events: each chat here starts once and reaches
    // the contact step at most once, so counting the rows is what the turns would have added.
    sql.push(
        "INSERT INTO funnel_hours (business_id, hour, src_kind, src_label, started, reached) \
         SELECT business_id, hour, src_kind, src_label, \
           SUM(CASE WHEN kind = 'start' THEN 1 ELSE 0 END), \
           SUM(CASE WHEN kind = 'contact' THEN 1 ELSE 0 END) \
         FROM (SELECT business_id, kind, at - at % 3600000 AS hour, \
           CASE WHEN link_name IS NOT NULL THEN 'link' WHEN payload IS NOT NULL THEN 'payload' \
             WHEN utm_source IS NOT NULL THEN 'utm' ELSE 'direct' END AS src_kind, \
           COALESCE(link_name, payload, '') AS src_label FROM chat_events) e \
         GROUP BY business_id, hour, src_kind, src_label"
            .into(),
    );
    if backend == Backend::Postgres {
        sql.push("VACUUM ANALYZE".into());
    }
    for statement in sql {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(raw_pool(store))
            .await
            .expect("fill");
    }
}

async fn floor(store: &Store, from: i64, to: i64) -> i64 {
    let mut n = 0;
    for sql in [
        "SELECT COUNT(*) FROM funnel_hours WHERE business_id = $1 AND hour >= $2 AND hour < $3",
        "SELECT COUNT(*) FROM bookings WHERE business_id = $1 AND created_at >= $2 \
         AND created_at < $3 AND status <> 'failed' AND src_kind IS NOT NULL",
    ] {
        let c: i64 = sqlx::query_scalar(sql)
            .bind(BUSINESS)
            .bind(from)
            .bind(to)
            .fetch_one(raw_pool(store))
            .await
            .expect("floor");
        n += c;
    }
    n
}

struct Timings {
    floor: Vec<Duration>,
    funnel: Vec<Duration>,
    series: Vec<Duration>,
    page: Vec<Duration>,
    http: Vec<Duration>,
}

/// The console as `zapis run` serves it, over `store`, with a marketer signed in: the router
/// and the session cookie to send.
async fn console(store: &Store) -> (axum::Router, String) {
    use std::sync::Arc;
    use zapis::clock::{Clock, FakeClock};
    use zapis::console::{BusinessView, ConsoleState, auth};
    use zapis::store::Role;
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(end()));
    let tz: chrono_tz::Tz = "Europe/Moscow".parse().expect("zone");
    let view = BusinessView {
        id: bid(BUSINESS),
        name: "Салон".into(),
        timezone: tz,
        telegram_bot: Some("salon_bot".into()),
        max_bot: None,
        schedule: zapis::domain::System::Sandbox,
        crm: None,
        systems: vec![zapis::domain::System::Sandbox],
        webhook_sources: Vec::new(),
        webhook_prefix: "/webhooks/".into(),
        webhook_secret: "webhook-secret-0123456789".into(),
        booking: Arc::new(zapis::booking::sandbox::Sandbox::new(
            store.clone(),
            &bid(BUSINESS),
            tz,
            clock.clone(),
        )),
        crm_client: None,
    };
    let state = ConsoleState::new(store.clone(), clock, vec![view], None).expect("console");
    let hash = auth::hash_password("bench password").expect("hash");
    let user = store
        .add_console_user(
            "mila",
            &hash,
            Role::Marketer,
            &[BUSINESS.to_string()],
            end(),
        )
        .await
        .expect("user");
    let token = auth::random_token();
    store
        .create_console_session(
            &auth::token_digest(&token),
            &user.id,
            "csrf",
            end(),
            end() + chrono::Duration::days(1),
        )
        .await
        .expect("session");
    (
        zapis::console::router(Arc::new(state)),
        format!("{}={token}", auth::SESSION_COOKIE),
    )
}

/// The Sources page for November in Moscow, as a browser asks for it; its size in bytes.
async fn render(router: &axum::Router, cookie: &str) -> usize {
    use tower::ServiceExt as _;
    let request = axum::http::Request::get(format!(
        "/console/b/{BUSINESS}/sources?from=2026-11-01&to=2026-11-30"
    ))
    .header(axum::http::header::COOKIE, cookie)
    .body(axum::body::Body::empty())
    .expect("request");
    let response = router.clone().oneshot(request).await.expect("answer");
    assert_eq!(response.status(), axum::http::StatusCode::OK, "the page");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert!(
        String::from_utf8_lossy(&body).contains("Link 3"),
        "the page lists the tracked links' rows"
    );
    body.len()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn spread(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{:7.1} / {:7.1} / {:7.1}",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

async fn explain(store: &Store, from: i64, to: i64) {
    for sql in source_funnel_sql() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS) {sql}"
        )))
        .bind(BUSINESS)
        .bind(from)
        .bind(to)
        .fetch_all(raw_pool(store))
        .await
        .expect("explain");
        for row in rows {
            println!("    {}", row.try_get::<String, _>(0).expect("line"));
        }
        println!();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ZAPIS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stores = vec![(
        "SQLite",
        Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("sources.db").display()
        ))
        .await
        .expect("sqlite"),
    )];
    match std::env::var("ZAPIS_TEST_POSTGRES_URL") {
        Ok(base) => stores.push((
            "PostgreSQL",
            zapis::store::test_support::fresh_postgres(&base).await,
        )),
        Err(_) => println!("PostgreSQL skipped: ZAPIS_TEST_POSTGRES_URL is not set"),
    }
    for (name, store) in &stores {
        let started = Instant::now();
        fill(store).await;
        println!(
            "{name}: filled {EVENTS} chat events, {BOOKINGS} bookings in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let to = end();
    let from = to - chrono::Duration::days(30);
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let tz: chrono_tz::Tz = "Europe/Moscow".parse().expect("zone");
    let mut timings: Vec<Timings> = stores
        .iter()
        .map(|_| Timings {
            floor: Vec::new(),
            funnel: Vec::new(),
            series: Vec::new(),
            page: Vec::new(),
            http: Vec::new(),
        })
        .collect();
    let mut consoles = Vec::new();
    for (_, store) in &stores {
        consoles.push(console(store).await);
    }
    let mut page_bytes = vec![0; stores.len()];
    let mut rows_read = vec![0; stores.len()];
    let mut sources = vec![0; stores.len()];
    // One warm-up round, not counted: the first read of a fresh file comes from disk.
    for round in 0..=rounds {
        for (i, (_, store)) in stores.iter().enumerate() {
            let t = Instant::now();
            rows_read[i] = floor(store, from_ms, to_ms).await;
            let floor_took = t.elapsed();
            let t = Instant::now();
            let rows = store
                .source_funnel(&bid(BUSINESS), from, to)
                .await
                .expect("funnel");
            let funnel_took = t.elapsed();
            sources[i] = rows.len();
            let t = Instant::now();
            let series = store
                .funnel_series(&bid(BUSINESS), from, to, Bucket::Day, tz, None)
                .await
                .expect("series");
            let series_took = t.elapsed();
            assert_eq!(series.len(), 31, "30 days in Moscow time touch 31 dates");
            let total: i64 = rows.iter().map(|r| r.funnel.bookings).sum();
            let by_day: i64 = series.iter().map(|(_, f)| f.bookings).sum();
            assert_eq!(total, by_day, "the series adds up to the table");
            let t = Instant::now();
            page_bytes[i] = render(&consoles[i].0, &consoles[i].1).await;
            let http_took = t.elapsed();
            if round > 0 {
                let tm = &mut timings[i];
                tm.http.push(http_took);
                tm.floor.push(floor_took);
                tm.funnel.push(funnel_took);
                tm.series.push(series_took);
                tm.page.push(funnel_took + series_took);
            }
        }
    }
    println!(
        "\n30-day window, {rounds} rounds, milliseconds min / median / max \
         (sources found, rows in the window: roll-up hours + bookings)"
    );
    for (i, (name, _)) in stores.iter().enumerate() {
        let tm = &timings[i];
        println!("{name} ({} sources, {} rows)", sources[i], rows_read[i]);
        println!("  floor: COUNT(*) of both     {}", spread(tm.floor.clone()));
        println!(
            "  source_funnel               {}",
            spread(tm.funnel.clone())
        );
        println!(
            "  funnel_series (day)         {}",
            spread(tm.series.clone())
        );
        println!("  page (funnel + series)      {}", spread(tm.page.clone()));
        println!(
            "  page over HTTP, rendered    {}  ({} bytes)",
            spread(tm.http.clone()),
            page_bytes[i]
        );
    }
    for (name, store) in &stores {
        if store.backend() == Backend::Postgres {
            println!("\n{name}: EXPLAIN ANALYZE of source_funnel (chat events, then bookings)");
            explain(store, from_ms, to_ms).await;
        }
    }
}

/// A business id written in a bench, where a bad one is the bench's own mistake.
fn bid(id: &str) -> zapis::domain::BusinessId {
    zapis::domain::BusinessId::parse(id).expect("a bench's business id is valid")
}
