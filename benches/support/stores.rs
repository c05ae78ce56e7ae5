//! A fresh store for each benchmark run, and its disposal: a SQLite file, or a PostgreSQL
//! schema of its own (no planner statistics, as in a new deployment) dropped afterwards.

use sqlx::postgres::PgPoolOptions;
use zapis::store::test_support::raw_pool;
use zapis::store::{Backend, Store};

/// A new store of `backend` ("sqlite" in `file`, otherwise PostgreSQL at
/// ZAPIS_TEST_POSTGRES_URL).
pub async fn fresh(backend: &str, file: &std::path::Path) -> Store {
    match backend {
        "sqlite" => Store::connect(&format!("sqlite://{}", file.display()))
            .await
            .expect("sqlite store"),
        _ => {
            let base = std::env::var("ZAPIS_TEST_POSTGRES_URL").expect("postgres url");
            zapis::store::test_support::fresh_postgres(&base).await
        }
    }
}

/// Closes the store; on PostgreSQL also drops its schema, so runs leave nothing behind.
pub async fn dispose(store: Store) {
    let schema = match store.backend() {
        Backend::Postgres => sqlx::query_scalar::<_, String>("SELECT current_schema()")
            .fetch_one(raw_pool(&store))
            .await
            .ok(),
        Backend::Sqlite => None,
    };
    store.close().await;
    if let (Some(schema), Ok(base)) = (schema, std::env::var("ZAPIS_TEST_POSTGRES_URL")) {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .expect("admin pool");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&admin)
        .await
        .expect("drop bench schema");
        // The dropped schema's catalogue rows stay dead until vacuumed, and a database without
        // autovacuum (as CI's) made every run a few percent slower than the one before; its
        // dirty pages are written now rather than during the next run. Both need rights a
        // bench's role may lack, and only make rounds fairer: best effort.
        for sql in [
            "VACUUM pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_depend, \
             pg_catalog.pg_type, pg_catalog.pg_index, pg_catalog.pg_constraint, \
             pg_catalog.pg_statistic",
            "CHECKPOINT",
        ] {
            let _ = sqlx::query(sql).execute(&admin).await;
        }
        admin.close().await;
    }
}

/// The backends to measure: SQLite always, PostgreSQL when ZAPIS_TEST_POSTGRES_URL is set (and
/// a line saying so when it is not).
pub fn backends() -> Vec<&'static str> {
    let mut backends = vec!["sqlite"];
    if std::env::var("ZAPIS_TEST_POSTGRES_URL").is_ok() {
        backends.push("postgres");
    } else {
        println!("PostgreSQL skipped: ZAPIS_TEST_POSTGRES_URL is not set");
    }
    backends
}
