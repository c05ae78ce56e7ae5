//! `zapis onec check` and `zapis onec stock`.

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

/// The configured object names next to what the base publishes. `Ok(false)` when a name is
/// missing from `$metadata`, so a mismatch is found before the first real document.
pub async fn check(
    config: &OnecConfig,
    onec: &OnecOdata,
    out: &mut impl Write,
) -> Result<bool, OnecCliError> {
    let sets = onec.entity_sets().await?;
    writeln!(
        out,
        "1C OData: credentials accepted, {} entity sets published",
        sets.len()
    )?;
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
    let mut all_ok = true;
    for (key, name) in wanted {
        if sets.contains(&name) {
            writeln!(out, "  ok        onec.objects.{key:<17} {name}")?;
            continue;
        }
        all_ok = false;
        // Same kind of object with a similar name: the usual configuration difference
        // (…Покупателю in Бухгалтерия, …Клиенту in Торговля).
        let kind = name.split('_').next().unwrap_or("");
        let stem: String = name.chars().take(kind.chars().count() + 8).collect();
        let similar: Vec<&String> = sets
            .iter()
            .filter(|s| s.starts_with(&stem) && s.split('_').count() == name.split('_').count())
            .take(5)
            .collect();
        let hint = if similar.is_empty() {
            String::new()
        } else {
            format!(
                "; published: {}",
                similar
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        writeln!(
            out,
            "  MISMATCH  onec.objects.{key:<17} {name} is not published{hint}"
        )?;
    }
    Ok(all_ok)
}

/// Prints the stock and, with `alerts`, raises the low-stock alert for lines at or below
/// `onec.low_stock_threshold`.
pub async fn stock(
    config: &OnecConfig,
    onec: Option<&OnecOdata>,
    store: &Store,
    business_id: &str,
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
                business_id: business_id.to_string(),
                system: "onec".into(),
                since: now,
                at: now,
                last_error: Some(low.join(", ")),
            })
            .await;
    }
    Ok(lines)
}
