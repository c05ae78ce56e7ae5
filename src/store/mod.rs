//! Persistence behind one API: SQLite by default (one file, no server), PostgreSQL for
//! several instances. Queries are written once in the dialect both accept (`$1` parameters,
//! BIGINT unix-millisecond instants, TEXT JSON); the few that differ branch on [`Backend`].

pub mod analytics;
pub mod applications;
mod bookings;
mod chat_log;
mod clients;
mod console;
mod cursors;
mod dialogs;
pub mod forget;
mod group;
pub mod imports;
mod leases;
mod links;
pub mod onec;
mod pace;
#[cfg(test)]
mod plans;
pub mod retention;
pub mod sandbox;
mod support;
mod sync_state;
pub mod tokens;
mod turn_reads;
mod turns;
mod unfinished;

pub use analytics::{Bucket, Funnel, SourceKey, SourceKind, SourceRow};
pub use bookings::{
    booking_for_change_in, confirm_booking_in, insert_booking_in, move_booking_in,
    set_booking_status_in,
};
pub use chat_log::ChatLine;
pub use console::{ALL_BUSINESSES, ConsoleSession, ConsoleUser, Role};
pub use dialogs::{FunnelStep, TurnEvent, TurnLine, TurnStart};
pub use leases::LoopLease;
pub use links::{LinkStats, TrackedLink, claim_booking_link_in};
pub use pace::PaceTurn;
pub use support::SupportRelay;
pub use sync_state::{
    BookingEvent, KnownState, claim_reminder_in, confirm_visit_in, put_known_in, record_event_in,
    version_of,
};
pub use unfinished::{Attempt, AttemptTurn, DueAttempt};

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

use crate::domain::{BookingId, BusinessId, System};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the write of a chat turn was abandoned before it committed")]
    TurnLost,
    #[error("the read of a chat turn was abandoned before it answered")]
    ReadLost,
    #[error("reading chat turns failed: {0}")]
    Read(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("cannot back up: {0}")]
    Backup(String),
    #[error("there is no store at {url} yet: `zapis migrate` creates it")]
    Missing { url: String },
    #[error(
        "the store at {url} is at schema version {current}, this zapis needs {target}: \
         run `zapis migrate`"
    )]
    Behind {
        url: String,
        current: i64,
        target: i64,
    },
    #[error(
        "the store at {url} is at schema version {current}, newer than this zapis knows \
         ({target}): run the zapis that migrated it, or a newer one"
    )]
    Ahead {
        url: String,
        current: i64,
        target: i64,
    },
}

/// Where a store's schema stands against this binary's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration applied to the store (0 for a store with no tables yet).
    pub current: i64,
    /// The newest migration this binary carries.
    pub target: i64,
}

/// The `business_id` column of a row. Every id was checked when it was written, so one that
/// does not parse was written by hand (or under another rule) and is reported, not trusted.
pub fn business_id_in(row: &sqlx::any::AnyRow) -> Result<BusinessId, StoreError> {
    use sqlx::Row;
    let raw: String = row.try_get("business_id")?;
    BusinessId::parse(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Our booking id held in column `column` of a row. Ids are written only from a
/// [`BookingId`], so one that does not parse was written by hand and is reported, not trusted.
pub fn booking_id_named(row: &sqlx::any::AnyRow, column: &str) -> Result<BookingId, StoreError> {
    use sqlx::Row;
    let raw: String = row.try_get(column)?;
    parse_booking_id(&raw)
}

/// A stored booking id, or [`StoreError::Corrupt`] naming it.
pub fn parse_booking_id(raw: &str) -> Result<BookingId, StoreError> {
    BookingId::parse(raw).map_err(|e| StoreError::Corrupt(format!("{e} (a stored booking id)")))
}

/// The `system` column of a row. Names are written only from [`System::as_str`], so one that
/// does not parse was written by hand or by a newer zapis: it is reported, never guessed at.
pub fn system_in(row: &sqlx::any::AnyRow) -> Result<System, StoreError> {
    system_named(row, "system")
}

/// A system named by column `column` of a row, as [`system_in`] reads `system`.
pub fn system_named(row: &sqlx::any::AnyRow, column: &str) -> Result<System, StoreError> {
    use sqlx::Row;
    let raw: String = row.try_get(column)?;
    parse_system(&raw)
}

/// A stored system name, or [`StoreError::Corrupt`] naming it.
pub fn parse_system(raw: &str) -> Result<System, StoreError> {
    raw.parse()
        .map_err(|e| StoreError::Corrupt(format!("{e} (a stored system name)")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Chat turns waiting for their group commit.
    turns: std::sync::Arc<turns::TurnQueue>,
    /// Chat turns' reads waiting for their group read.
    reads: std::sync::Arc<turn_reads::ReadQueue>,
}

/// Connections to a SQLite file.
const SQLITE_CONNECTIONS: u32 = 4;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store at `url`. A store
    /// migrated by a newer zapis is refused, both versions named.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let store = Self::open(url).await?;
        let version = store.schema_version().await?;
        if version.current > version.target {
            return Err(StoreError::Ahead {
                url: redact_url(url),
                current: version.current,
                target: version.target,
            });
        }
        store.migrate().await?;
        Ok(store)
    }

    /// Opens a store that must already exist at this binary's schema version, creating and
    /// changing nothing: what read-only commands (`check`, `queue`, `journal`, `bookings`) use.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        let missing = || StoreError::Missing {
            url: redact_url(url),
        };
        let url_ro = if url.starts_with("sqlite:") && !url.contains(":memory:") {
            if !sqlite_file_exists(url) {
                return Err(missing());
            }
            with_sqlite_mode(url, "rw")
        } else {
            url.to_string()
        };
        let store = Self::open(&url_ro).await?;
        let version = store.schema_version().await?;
        let (current, target) = (version.current, version.target);
        let url = redact_url(url);
        if current == 0 {
            return Err(StoreError::Missing { url });
        }
        if current < target {
            return Err(StoreError::Behind {
                url,
                current,
                target,
            });
        }
        if current > target {
            return Err(StoreError::Ahead {
                url,
                current,
                target,
            });
        }
        Ok(store)
    }

    /// The store's schema version and this binary's, read without changing anything.
    pub async fn schema_version(&self) -> Result<SchemaVersion, StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let target = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let exists_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&self.pool).await?;
        let current = if exists == 0 {
            0
        } else {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
            )
            .fetch_one(&self.pool)
            .await?
            .unwrap_or(0)
        };
        Ok(SchemaVersion { current, target })
    }

    /// Opens without migrating (for `zapis migrate` and tests that inspect migrations).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(url))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(connect_err(sqlx::Error::Configuration(
                "the store URL must start with sqlite: or postgres:".into(),
            )));
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(connect_err)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An in-memory SQLite database lives in one connection. A SQLite file takes one writer
        // at a time and chat turns share their commits (`turns`): past a few readers, more
        // connections only add threads, each with its own page cache.
        let max_connections = match (backend, in_memory) {
            (_, true) => 1,
            (Backend::Sqlite, false) => SQLITE_CONNECTIONS,
            (Backend::Postgres, false) => 8,
        };
        let pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            // sqlx pings a connection when it goes back to the pool anyway; a SQLite
            // connection has no network to lose, so a second ping on the way out is one more
            // hand-off to its thread for nothing.
            .test_before_acquire(backend == Backend::Postgres)
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout makes
                        // concurrent writers wait instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        // In WAL mode a connection drops its whole page cache when it starts
                        // reading after another connection's commit, which with chat turns is
                        // nearly every time: SQLite's default 2 MiB a connection is resident
                        // memory that seldom serves a read twice.
                        sqlx::query("PRAGMA cache_size = -1024")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        Ok(Store {
            pool,
            backend,
            turns: Default::default(),
            reads: Default::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for the store's own statements and the queue's in `sync/`; every other part
    /// goes through a method that names what it reads or writes.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// One round trip to the database: whether it answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A write transaction. On SQLite it takes the write lock at `BEGIN IMMEDIATE`, so a
    /// transaction that reads before it writes waits out the busy timeout instead of failing
    /// with "database is locked" when another writer committed in between (the reconciler,
    /// reminders, the engine and the bots all write to one file).
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Copies a SQLite store into `file` in one read transaction (`VACUUM INTO`): consistent
    /// while writers go on, and compact. PostgreSQL is refused: `pg_dump` does that job.
    pub async fn backup_into(&self, file: &std::path::Path) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Backup(
                "zapis backup copies SQLite stores; for PostgreSQL use pg_dump (docs/deploy.md)"
                    .into(),
            ));
        }
        if file.exists() {
            return Err(StoreError::Backup(format!(
                "{} exists already; name a new file",
                file.display()
            )));
        }
        let path = file
            .to_str()
            .ok_or_else(|| StoreError::Backup(format!("{} is not a UTF-8 path", file.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The parameters of row `row` (from 0) of a multi-row statement, `width` a row, numbered
/// from `$1` on PostgreSQL. SQLite gets anonymous `?`: it looks each `$N` up among the
/// statement's names before it, so binding thousands of them is quadratic.
pub(crate) fn row_params(backend: Backend, row: usize, width: usize) -> String {
    let params: Vec<String> = (1..=width)
        .map(|c| match backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${}", row * width + c),
        })
        .collect();
    params.join(", ")
}

/// `sqlite://zapis.db` → create the file when missing.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_string()
    } else {
        with_sqlite_mode(url, "rwc")
    }
}

fn with_sqlite_mode(url: &str, mode: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

/// Whether the file a `sqlite:` URL names exists (`sqlite://path`, `sqlite:path`, options after
/// `?`).
fn sqlite_file_exists(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:");
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    std::path::Path::new(path).exists()
}

/// Hides a password in a connection URL before it reaches a log or an error.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Helpers shared by the store tests of every module: each test runs on SQLite and, when
/// `ZAPIS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL schema as well.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub async fn sqlite() -> Store {
        Store::connect("sqlite::memory:")
            .await
            .expect("in-memory sqlite")
    }

    /// A store on PostgreSQL in a schema of its own, or `None` (with a note) when no server is
    /// configured.
    pub async fn postgres() -> Option<Store> {
        let Ok(base) = std::env::var("ZAPIS_TEST_POSTGRES_URL") else {
            eprintln!("SKIPPED PostgreSQL half of this test: ZAPIS_TEST_POSTGRES_URL is not set");
            return None;
        };
        Some(crate::store::test_support::fresh_postgres(&base).await)
    }

    pub async fn all() -> Vec<Store> {
        let mut stores = vec![sqlite().await];
        stores.extend(postgres().await);
        stores
    }

    /// An hour's haircut of business `b1` booked from Telegram chat `42`, made on 2030-01-01:
    /// the booking tests start from and change what they are about.
    pub fn booking(id: &str, phone: &str, start: DateTime<Utc>) -> crate::domain::Booking {
        use crate::domain::{Booking, BookingStatus, Channel, ChatRef, Money, Source};
        use chrono::TimeZone;
        Booking {
            id: crate::domain::bk(id),
            business_id: crate::domain::bid("b1"),
            client_phone: crate::normalize::Phone::parse(phone).expect("a valid phone"),
            client_name: "Анна".into(),
            client_email: None,
            service_id: "s1".into(),
            service_name: "Стрижка".into(),
            master_id: "m1".into(),
            master_name: "Ольга".into(),
            start,
            duration_min: 60,
            price: Money::from_rubles(1500),
            status: BookingStatus::Booked,
            source: Source::direct(Channel::Telegram),
            chat: Some(ChatRef::new(Channel::Telegram, "42")),
            external_id: None,
            created_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        }
    }
}

/// Used by unit and integration tests alike to get an isolated PostgreSQL database.
#[doc(hidden)]
pub mod test_support {
    use super::*;

    /// The store's pool, for integration tests and benchmarks that arrange or inspect tables
    /// directly. The product's code reads and writes through `Store`'s methods instead
    /// (tests/it/architecture.rs keeps it so).
    pub fn raw_pool(store: &Store) -> &AnyPool {
        &store.pool
    }

    /// Creates a uniquely named schema and returns a migrated store whose connections use it.
    pub async fn fresh_postgres(base_url: &str) -> Store {
        let schema = format!("t_{}", new_id());
        sqlx::any::install_default_drivers();
        let admin = AnyPool::connect(base_url)
            .await
            .expect("connect to test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options=-csearch_path%3D{schema}");
        Store::connect(&url).await.expect("migrate test schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our booking id is checked where a row is read: one written by hand that no build would
    /// write is reported as a corrupt row, not carried on into jobs and buttons.
    #[tokio::test]
    async fn a_stored_booking_id_no_build_would_write_reads_as_corrupt() {
        let start = Utc.with_ymd_and_hms(2030, 1, 2, 9, 0, 0).unwrap();
        for store in testing::all().await {
            store
                .insert_booking(&testing::booking("a", "+79123456789", start))
                .await
                .unwrap();
            sqlx::query("UPDATE bookings SET id = $1 WHERE id = 'a'")
                .bind("a\u{7}")
                .execute(&store.pool)
                .await
                .unwrap();
            let err = store
                .bookings(&crate::domain::bid("b1"))
                .await
                .expect_err("a corrupt row");
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            assert!(err.to_string().contains("a stored booking id"), "{err}");
        }
    }
}
