//! The console's people and sessions: users with a role and the businesses they may see, and
//! server-side sessions keyed by a digest of the cookie. Password hashing and cookie handling
//! live in `console::auth`; this file only keeps what they produce.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, to_millis};

/// What a console user may open. The pages each role reaches are decided in `console`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything of their businesses.
    Owner,
    /// Bookings and clients.
    Manager,
    /// Sources and tracked links.
    Marketer,
    /// Deliveries and setup.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Manager, Role::Marketer, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Marketer => "marketer",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stands for every business of the deployment in a user's list.
pub const ALL_BUSINESSES: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub id: String,
    pub login: String,
    pub role: Role,
    /// Business ids, or [`ALL_BUSINESSES`].
    pub businesses: Vec<String>,
}

impl ConsoleUser {
    pub fn may_see(&self, business_id: &str) -> bool {
        self.businesses
            .iter()
            .any(|b| b == business_id || b == ALL_BUSINESSES)
    }
}

/// A signed-in user and the token their forms must carry.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub user: ConsoleUser,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Adds a user; a taken login is a [`StoreError::Conflict`].
    pub async fn add_console_user(
        &self,
        login: &str,
        password_hash: &str,
        role: Role,
        businesses: &[String],
        now: DateTime<Utc>,
    ) -> Result<ConsoleUser, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO console_users (id, login, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&id)
        .bind(login)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("a console user {login:?}")));
            }
            Err(e) => return Err(e.into()),
        }
        for business in businesses {
            sqlx::query(
                "INSERT INTO console_user_businesses (user_id, business_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(business)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ConsoleUser {
            id,
            login: login.to_string(),
            role,
            businesses: businesses.to_vec(),
        })
    }

    /// Replaces a user's password and ends their sessions. False when there is no such user.
    pub async fn set_console_password(
        &self,
        login: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE console_users SET password_hash = $1, updated_at = $2 WHERE login = $3 \
             RETURNING id",
        )
        .bind(password_hash)
        .bind(to_millis(now))
        .bind(login)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes a user, their business list and their sessions. False when there is no such
    /// user.
    pub async fn remove_console_user(&self, login: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let id: Option<String> =
            sqlx::query_scalar("DELETE FROM console_users WHERE login = $1 RETURNING id")
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        for table in ["console_user_businesses", "console_sessions"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        let rows = sqlx::query("SELECT id, login, role FROM console_users ORDER BY login")
            .fetch_all(&self.pool)
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push(self.user_from_row(&row).await?);
        }
        Ok(users)
    }

    /// The user with this login and their password hash.
    pub async fn console_user_by_login(
        &self,
        login: &str,
    ) -> Result<Option<(ConsoleUser, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, login, role, password_hash FROM console_users WHERE login = $1",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let hash: String = row.try_get("password_hash")?;
                Ok(Some((self.user_from_row(&row).await?, hash)))
            }
            None => Ok(None),
        }
    }

    async fn user_from_row(&self, row: &sqlx::any::AnyRow) -> Result<ConsoleUser, StoreError> {
        let id: String = row.try_get("id")?;
        let role: String = row.try_get("role")?;
        let businesses: Vec<String> = sqlx::query_scalar(
            "SELECT business_id FROM console_user_businesses WHERE user_id = $1 \
             ORDER BY business_id",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        Ok(ConsoleUser {
            id,
            login: row.try_get("login")?,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("console user role {role:?}")))?,
            businesses,
        })
    }

    /// Opens a session; expired sessions of anybody are dropped on the way, so the table holds
    /// only live ones.
    pub async fn create_console_session(
        &self,
        token_hash: &str,
        user_id: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(to_millis(now))
        .bind(to_millis(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session under this cookie digest, with its user as they are now.
    pub async fn console_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.login, u.role, s.csrf, s.expires_at FROM console_sessions s \
             JOIN console_users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(to_millis(now))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(ConsoleSession {
                csrf: row.try_get("csrf")?,
                expires_at: super::from_millis(row.try_get("expires_at")?)?,
                user: self.user_from_row(&row).await?,
            })),
            None => Ok(None),
        }
    }

    pub async fn end_console_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bid;
    use crate::store::testing;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("a time")
    }

    #[tokio::test]
    async fn users_sessions_and_their_end() {
        for store in testing::all().await {
            let anna = store
                .add_console_user("anna", "h1", Role::Marketer, &["b1".into()], at(0))
                .await
                .expect("added");
            assert!(anna.may_see(&bid("b1")) && !anna.may_see(&bid("b2")));
            let again = store
                .add_console_user("anna", "h2", Role::Owner, &[], at(0))
                .await;
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

            store
                .create_console_session("t1", &anna.id, "c1", at(0), at(60))
                .await
                .expect("session");
            let s = store
                .console_session("t1", at(30))
                .await
                .expect("read")
                .expect("live");
            assert_eq!((s.user.login.as_str(), s.csrf.as_str()), ("anna", "c1"));
            assert_eq!(s.user.role, Role::Marketer);
            assert!(
                store
                    .console_session("t1", at(60))
                    .await
                    .expect("read")
                    .is_none()
            );
            assert!(
                store
                    .console_session("t2", at(0))
                    .await
                    .expect("read")
                    .is_none()
            );

            // A new password ends every session of the user.
            store
                .create_console_session("t3", &anna.id, "c3", at(0), at(600))
                .await
                .expect("session");
            assert!(
                store
                    .set_console_password("anna", "h9", at(1))
                    .await
                    .expect("set")
            );
            assert!(
                store
                    .console_session("t3", at(2))
                    .await
                    .expect("read")
                    .is_none()
            );
            let (_, hash) = store
                .console_user_by_login("anna")
                .await
                .expect("read")
                .expect("there");
            assert_eq!(hash, "h9");

            store
                .create_console_session("t4", &anna.id, "c4", at(0), at(600))
                .await
                .expect("session");
            assert!(store.remove_console_user("anna").await.expect("removed"));
            assert!(!store.remove_console_user("anna").await.expect("gone"));
            assert!(
                store
                    .console_session("t4", at(2))
                    .await
                    .expect("read")
                    .is_none()
            );
            assert!(store.console_users().await.expect("list").is_empty());
        }
    }
}
