//! `zapis business list | check ID`, and `zapis check` over every business of a deployment.

use super::*;
use crate::config::{BusinessFile, Fleet};

pub(super) async fn business(cmd: BusinessCmd) -> anyhow::Result<()> {
    match cmd {
        BusinessCmd::List(arg) => {
            let fleet = fleet_of(&arg.config)?;
            let files = fleet.businesses()?;
            let mut out = std::io::stdout().lock();
            list(&fleet, &files, &mut out).context("writing the list")?;
            Ok(())
        }
        BusinessCmd::Check { config, id, probe } => {
            fleet_of(&config.config)?;
            check(
                &ConfigArg {
                    config: config.config,
                    business: Some(id),
                },
                probe,
            )
            .await
        }
    }
}

fn fleet_of(path: &std::path::Path) -> anyhow::Result<Fleet> {
    match layout(path)? {
        Layout::Fleet(fleet) => {
            crate::secrets::install(crate::secrets::Scrubber::from_parts(&fleet.deployment, []));
            Ok(*fleet)
        }
        Layout::Single(config) => bail!(
            "{} serves one business (`{}`); a deployment of several has `[businesses]` and a \
             file per business (docs/deploy.md)",
            path.display(),
            config.business.id
        ),
    }
}

/// One line a business: what it runs on, or why its file is refused.
fn list(
    fleet: &Fleet,
    files: &[BusinessFile],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    if files.is_empty() {
        writeln!(
            out,
            "no businesses yet: add a file per business to {}",
            fleet.dir.display()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<10} {:<9} {:<18} name",
        "id", "schedule", "crm", "bots"
    )?;
    for file in files {
        match &file.config {
            Ok(config) => {
                let schedule = match config.booking.system {
                    crate::config::BookingSystemKind::Sandbox => "sandbox",
                    crate::config::BookingSystemKind::Yclients => "yclients",
                    crate::config::BookingSystemKind::Dikidi => "dikidi",
                };
                let crm = match config.crm.as_ref().map(|c| c.system) {
                    Some(crate::crm::config::CrmSystem::Amocrm) => "amocrm",
                    Some(crate::crm::config::CrmSystem::Bitrix24) => "bitrix24",
                    None => "-",
                };
                let bots: Vec<&str> = [
                    config.telegram.as_ref().map(|_| "telegram"),
                    config.max.as_ref().map(|_| "max"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let bots = if bots.is_empty() {
                    "-".to_string()
                } else {
                    bots.join(",")
                };
                writeln!(
                    out,
                    "{:<20} {:<10} {:<9} {:<18} {}",
                    file.id, schedule, crm, bots, config.business.name
                )?;
            }
            Err(e) => writeln!(out, "{:<20} refused: {e}", file.id)?,
        }
    }
    Ok(())
}

/// `zapis check` on a deployment of several businesses: every business file read, then each
/// valid business checked as `zapis check --business ID` would.
pub(super) async fn check_fleet(fleet: &Fleet, probe: bool) -> anyhow::Result<()> {
    let files = fleet.businesses()?;
    println!(
        "deployment {}: valid, {} business file(s) in {}",
        fleet.file.display(),
        files.len(),
        fleet.dir.display()
    );
    let mut failed = Vec::new();
    for file in &files {
        println!();
        println!("business {}:", file.id);
        if let Err(e) = &file.config {
            println!("  refused: {e}");
            failed.push(file.id.clone());
            continue;
        }
        let arg = ConfigArg {
            config: fleet.file.clone(),
            business: Some(file.id.clone()),
        };
        if let Err(e) = check(&arg, probe).await {
            println!("  {e:#}");
            failed.push(file.id.clone());
        }
    }
    if !failed.is_empty() {
        bail!("business(es) failed the check: {}", failed.join(", "));
    }
    Ok(())
}
