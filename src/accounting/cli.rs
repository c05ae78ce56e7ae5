//! `zapis onec check` and `zapis onec stock`.

use crate::domain::BusinessId;
use crate::domain::System;
use std::io::Write;

use super::commerceml;
use super::config::{OnecConfig, OnecMode};
use super::onec_odata::OnecOdata;
use super::{Accounting, AccountingError};
use crate::store::Store;
use crate::sync::{Alert, AlertKind, Alerts};

#[derive(Debug, thiserror::Error)]
pub enum OnecCliError {
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    #[error("store: {0}")]
    Store(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One configured object name and whether the base publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCheck {
    /// The key under `[onec.objects]`.
    pub key: &'static str,
    /// The entity set it names.
    pub name: String,
    pub published: bool,
    /// Published sets of the same kind with a similar name, when it is not.
    pub similar: Vec<String>,
}

/// Logs in, reads `$metadata` and compares every configured object name with it. Returns how
/// many entity sets the base publishes and the verdict per name.
pub async fn check_objects(
    config: &OnecConfig,
    onec: &OnecOdata,
) -> Result<(usize, Vec<ObjectCheck>), AccountingError> {
    let sets = onec.entity_sets().await?;
    let o = &config.objects;
    let wanted = [
        ("counterparties", o.counterparties.clone()),
        (
            "contacts_section",
            format!("{}_{}", o.counterparties, o.contacts_section),
        ),
        ("invoice", o.invoice.clone()),
        (
            "invoice_lines",
            format!("{}_{}", o.invoice, o.invoice_lines),
        ),
        ("sales", o.sales.clone()),
        ("sales_lines", format!("{}_{}", o.sales, o.sales_lines)),
        ("stock_register", o.stock_register.clone()),
    ];
    let checks = wanted
        .into_iter()
        .map(|(key, name)| {
            if sets.contains(&name) {
                return ObjectCheck {
                    key,
                    name,
                    published: true,
                    similar: Vec::new(),
                };
            }
            // Same kind of object with a similar name: the usual configuration difference
            // (…Покупателю in Бухгалтерия, …Клиенту in Торговля).
            let kind = name.split('_').next().unwrap_or("");
            let stem: String = name.chars().take(kind.chars().count() + 8).collect();
            let similar = sets
                .iter()
                .filter(|s| s.starts_with(&stem) && s.split('_').count() == name.split('_').count())
                .take(5)
                .cloned()
                .collect();
            ObjectCheck {
                key,
                name,
                published: false,
                similar,
            }
        })
        .collect();
    Ok((sets.len(), checks))
}

fn write_objects(out: &mut impl Write, checks: &[ObjectCheck]) -> std::io::Result<()> {
    for c in checks {
        if c.published {
            writeln!(out, "  ok        onec.objects.{:<17} {}", c.key, c.name)?;
            continue;
        }
        let hint = if c.similar.is_empty() {
            String::new()
        } else {
            format!("; published: {}", c.similar.join(", "))
        };
        writeln!(
            out,
            "  MISMATCH  onec.objects.{:<17} {} is not published{hint}",
            c.key, c.name
        )?;
    }
    Ok(())
}

/// The configured object names next to what the base publishes. `Ok(false)` when a name is
/// missing from `$metadata`, so a mismatch is found before the first real document.
pub async fn check(
    config: &OnecConfig,
    onec: &OnecOdata,
    out: &mut impl Write,
) -> Result<bool, OnecCliError> {
    let (sets, checks) = check_objects(config, onec).await?;
    writeln!(
        out,
        "1C OData: credentials accepted, {sets} entity sets published"
    )?;
    write_objects(out, &checks)?;
    Ok(checks.iter().all(|c| c.published))
}

/// The 1C lines of `zapis check` and whether they pass: over OData the credentials and every
/// configured object name against `$metadata`; with CommerceML 1C calls us, so there is
/// nothing to reach from here.
pub async fn check_lines(config: &OnecConfig) -> (String, bool) {
    if config.mode == OnecMode::Commerceml {
        return (
            "onec (commerceml): 1C calls us at /1c/exchange with the login of \
             [onec.commerceml]; nothing to reach from here\n"
                .to_string(),
            true,
        );
    }
    let onec = match OnecOdata::new(config) {
        Ok(onec) => onec,
        Err(e) => return (format!("onec (odata): misconfigured: {e}\n"), false),
    };
    match check_objects(config, &onec).await {
        Ok((sets, checks)) => {
            let mut out = Vec::new();
            let ok = checks.iter().all(|c| c.published);
            let _ = writeln!(
                out,
                "onec (odata): reachable, credentials accepted, {sets} entity sets published{}",
                if ok {
                    ""
                } else {
                    "; some [onec.objects] names are not published"
                }
            );
            let _ = write_objects(&mut out, &checks);
            (String::from_utf8_lossy(&out).into_owned(), ok)
        }
        Err(e) if e.is_auth() => (format!("onec (odata): bad credentials: {e}\n"), false),
        Err(e) if e.is_transient() => (format!("onec (odata): unreachable: {e}\n"), false),
        Err(e) => (format!("onec (odata): misconfigured: {e}\n"), false),
    }
}

/// Prints the stock and, with `alerts`, raises the low-stock alert for lines at or below
/// `onec.low_stock_threshold`.
pub async fn stock(
    config: &OnecConfig,
    onec: Option<&OnecOdata>,
    store: &Store,
    business_id: &BusinessId,
    alerts: Option<&Alerts>,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut impl Write,
) -> Result<usize, OnecCliError> {
    let threshold = config.low_stock_threshold.map(|t| t as f64);
    let mut low = Vec::new();
    let mut lines = 0;
    match (config.mode, onec) {
        (OnecMode::Odata, Some(onec)) => {
            let names: std::collections::HashMap<&str, &str> = config
                .services
                .iter()
                .map(|(service, key)| (key.as_str(), service.as_str()))
                .collect();
            for b in onec.stock().await? {
                let label = names
                    .get(b.item.as_str())
                    .map(|s| format!("{} ({s})", b.item))
                    .unwrap_or_else(|| b.item.clone());
                let is_low = threshold.is_some_and(|t| b.quantity <= t);
                writeln!(
                    out,
                    "{:>12}  {label}{}",
                    b.quantity,
                    if is_low { "  LOW" } else { "" }
                )?;
                if is_low {
                    low.push(format!("{label} ({})", b.quantity));
                }
                lines += 1;
            }
        }
        _ => {
            let rows = commerceml::stock(store, business_id)
                .await
                .map_err(|e| OnecCliError::Store(e.to_string()))?;
            for r in rows {
                let qty = r.quantity_milli.map(|q| q as f64 / 1000.0);
                let is_low = matches!((threshold, qty), (Some(t), Some(q)) if q <= t);
                writeln!(
                    out,
                    "{:>12}  {}{}",
                    qty.map(|q| q.to_string()).unwrap_or_else(|| "-".into()),
                    r.name,
                    if is_low { "  LOW" } else { "" }
                )?;
                if is_low {
                    low.push(format!("{} ({})", r.name, qty.unwrap_or_default()));
                }
                lines += 1;
            }
        }
    }
    if let Some(alerts) = alerts
        && !low.is_empty()
    {
        alerts
            .send(&Alert {
                kind: AlertKind::LowStock,
                business_id: business_id.clone(),
                system: System::Onec,
                since: now,
                at: now,
                last_error: Some(low.join(", ")),
            })
            .await;
    }
    Ok(lines)
}
