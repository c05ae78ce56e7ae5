//! Shared pieces of the integration tests.

#![allow(dead_code)]

pub mod fake_target;

/// A fresh PostgreSQL schema's URL (migrated), or `None` with a note when no server is set.
pub async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("ZAPIS_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED PostgreSQL half of this test: ZAPIS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create test schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    zapis::store::Store::connect(&url)
        .await
        .expect("migrate test schema")
        .close()
        .await;
    Some(url)
}
