//! The append-only audit journal: one row per delivery attempt. Error texts pass through
//! [`mask_text`] first, so a vendor echoing our payload cannot leak a phone or an email into
//! it; the journal never sees request headers, so tokens cannot reach it at all.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::domain::System;
use crate::store::{Backend, Store, StoreError, from_millis, to_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub at: DateTime<Utc>,
    /// A string, not a `BusinessId`: the journal also records what belongs to no business
    /// (a console sign-in is journalled under `""`), and every row already written must read.
    pub business_id: String,
    pub system: System,
    pub operation: String,
    pub job_id: i64,
    pub attempt: i64,
    /// `delivered`, `transient`, `permanent`, `auth`, `abandoned` (worker died), `interrupted`
    /// (worker shut down).
    pub outcome: String,
    pub http_status: Option<u16>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

impl JournalEntry {
    pub fn failed(&self) -> bool {
        self.outcome != "delivered"
    }
}

/// Appends one row on an open connection or transaction: the batch statement with one row.
pub(crate) async fn insert_journal_in(
    conn: &mut AnyConnection,
    e: &JournalEntry,
) -> Result<(), StoreError> {
    insert_journal_batch_in(conn, &[e]).await
}

/// Appends one row on a connection of its own.
pub(crate) async fn insert_journal(store: &Store, e: &JournalEntry) -> Result<(), StoreError> {
    let mut conn = store.pool().acquire().await?;
    insert_journal_in(&mut conn, e).await
}

/// Appends many rows with multi-row statements (a worker records a whole batch at once).
pub(crate) async fn insert_journal_batch_in(
    conn: &mut AnyConnection,
    entries: &[&JournalEntry],
) -> Result<(), StoreError> {
    const COLS: usize = 10;
    let backend = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    for chunk in entries.chunks(200) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", crate::store::row_params(backend, i, COLS)))
            .collect();
        let sql = format!(
            "INSERT INTO sync_journal (at, business_id, system, operation, job_id, attempt, \
               outcome, http_status, duration_ms, error) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(to_millis(e.at))
                .bind(&e.business_id)
                .bind(e.system.as_str())
                .bind(&e.operation)
                .bind(e.job_id)
                .bind(e.attempt)
                .bind(&e.outcome)
                .bind(e.http_status.map(i64::from))
                .bind(e.duration_ms)
                .bind(e.error.as_deref().map(mask_text));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Filters for `zapis journal`.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub business_id: Option<String>,
    pub system: Option<System>,
    pub failed_only: bool,
    pub since: Option<DateTime<Utc>>,
    pub job_id: Option<i64>,
    pub limit: Option<i64>,
}

/// Reads journal rows, oldest first; with a limit, the latest `limit` rows.
pub async fn read_journal(
    store: &Store,
    f: &JournalFilter,
) -> Result<Vec<JournalEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, business_id, system, operation, job_id, attempt, outcome, http_status, \
           duration_ms, error FROM sync_journal \
         WHERE ($1 IS NULL OR business_id = $1) AND ($2 IS NULL OR system = $2) \
           AND ($3 = 0 OR outcome <> 'delivered') AND at >= $4 \
           AND ($5 IS NULL OR job_id = $5) \
         ORDER BY id DESC LIMIT $6",
    )
    .bind(f.business_id.as_deref())
    .bind(f.system.map(System::as_str))
    .bind(i64::from(f.failed_only))
    .bind(f.since.map(to_millis).unwrap_or(i64::MIN))
    .bind(f.job_id)
    .bind(f.limit.unwrap_or(i64::MAX))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(JournalEntry {
                at: from_millis(r.try_get("at")?)?,
                business_id: r.try_get("business_id")?,
                system: crate::store::system_in(r)?,
                operation: r.try_get("operation")?,
                job_id: r.try_get("job_id")?,
                attempt: r.try_get("attempt")?,
                outcome: r.try_get("outcome")?,
                http_status: r
                    .try_get::<Option<i64>, _>("http_status")?
                    .and_then(|s| u16::try_from(s).ok()),
                duration_ms: r.try_get("duration_ms")?,
                error: r.try_get("error")?,
            })
        })
        .rev()
        .collect()
}

/// Masks personal data in free text: emails become `a***@domain`, runs of 7+ digits (with
/// the spaces, dashes, dots and brackets phones are written with) keep their first few and
/// last two digits. Short numbers such as HTTP statuses and ids stay readable.
pub fn mask_text(text: &str) -> String {
    let masked_emails = mask_emails(text);
    mask_digit_runs(&masked_emails)
}

fn mask_emails(text: &str) -> String {
    let is_local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut flushed = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > flushed && is_local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_domain(chars[end]) {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            let domain = domain.trim_end_matches('.');
            if start < i && domain.contains('.') {
                out.extend(&chars[flushed..start]);
                out.push(chars[start]);
                out.push_str("***@");
                out.push_str(domain);
                let consumed = i + 1 + domain.chars().count();
                flushed = consumed;
                i = consumed;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&chars[flushed..]);
    out
}

fn mask_digit_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_run = chars[i].is_ascii_digit()
            || (chars[i] == '+' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()));
        if !starts_run {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // Extend over digits and phone separators, but never end on a separator.
        let mut end = i + 1;
        let mut last_digit = i;
        while end < chars.len() && (chars[end].is_ascii_digit() || " -().".contains(chars[end])) {
            if chars[end].is_ascii_digit() {
                last_digit = end;
            }
            end += 1;
        }
        let end = last_digit + 1;
        let digits = chars[i..end].iter().filter(|c| c.is_ascii_digit()).count();
        if digits >= 7 {
            let keep_head = 3;
            let mut seen = 0;
            for &c in &chars[i..end] {
                if c.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen <= keep_head || seen > digits - 2 {
                        c
                    } else {
                        '*'
                    });
                } else {
                    out.push(c);
                }
            }
        } else {
            out.extend(&chars[i..end]);
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones_and_emails_but_not_statuses() {
        let text =
            "HTTP 422: contact +7 (912) 345-67-89 / 89123456789 exists, mail Anna.K@Example.ru.";
        let masked = mask_text(text);
        assert_eq!(
            masked,
            "HTTP 422: contact +7 (91*) ***-**-89 / 891******89 exists, mail A***@Example.ru."
        );
        assert_eq!(
            mask_text("timeout after 200 ms, id 12345"),
            "timeout after 200 ms, id 12345"
        );
        assert_eq!(mask_text("a @ b"), "a @ b");
    }
}
