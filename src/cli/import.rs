//! `zapis import`: clients from a CSV file or a CRM into the store or a CRM.

use super::*;

pub(super) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;

    use crate::import::load::{self, ImportTarget, Index, LoadOptions};
    use crate::import::targets::{AmoTarget, Bitrix24Target, YclientsTarget};

    let config = load(&args.config)?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    // One store for the target and the load. Opened without migrating for a dry run (it must
    // not write, not even the schema), and then only for a target that keeps its tokens there.
    let store = if args.dry_run {
        None
    } else {
        Some(
            Store::connect(&config.store.url)
                .await
                .context("opening the store")?,
        )
    };
    let open_store = || async {
        match &store {
            Some(store) => Ok(store.clone()),
            None => Store::open(&config.store.url)
                .await
                .context("opening the store"),
        }
    };
    let target: Arc<dyn ImportTarget> = match args.into {
        ImportInto::Amocrm => {
            let Some(amo) = config.crm.as_ref().and_then(|c| c.amocrm.clone()) else {
                bail!("--into amocrm needs a [crm.amocrm] section in the configuration");
            };
            Arc::new(AmoTarget(
                crate::crm::amocrm::AmoCrm::new(
                    amo,
                    open_store().await?,
                    &config.business.id,
                    clock.clone(),
                )
                .context("crm.amocrm")?,
            ))
        }
        ImportInto::Bitrix24 => {
            let Some(b24) = config.crm.as_ref().and_then(|c| c.bitrix24.clone()) else {
                bail!("--into bitrix24 needs a [crm.bitrix24] section in the configuration");
            };
            Arc::new(Bitrix24Target(
                crate::crm::bitrix24::Bitrix24::new(
                    b24,
                    open_store().await?,
                    &config.business.id,
                    clock.clone(),
                )
                .context("crm.bitrix24")?,
            ))
        }
        ImportInto::Yclients => {
            let Some(yc) = config.booking.yclients.as_ref() else {
                bail!("--into yclients needs a [booking.yclients] section in the configuration");
            };
            let client = crate::booking::yclients::Yclients::new(yc, clock.clone());
            // `zapis run` on the same store is another process calling from this address. A
            // dry run opens no store (it must not create one) and keeps the process's pace.
            if let Some(store) = &store {
                client.share_pace_through(store);
            }
            Arc::new(YclientsTarget::new(client).map_err(|e| anyhow::anyhow!(e))?)
        }
    };
    // The target's contacts are listed while the file is read and the run recorded. The file
    // is read off the runtime's threads: the listing's request must not wait behind it, or
    // it reaches the target late and the requests paced after it bunch up against it.
    let listing = (!args.dry_run).then(|| load::Listing::start(&target));
    let (file, map) = (args.file.clone(), args.map.clone());
    let (bytes, prepared) = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let records = crate::import::read_bytes(&bytes, &map)
            .with_context(|| format!("reading {}", file.display()))?;
        anyhow::Ok((bytes, crate::import::prepare(records)))
    })
    .await
    .context("reading the file")??;
    let mut problems = prepared.problems.clone();
    let counts = if args.dry_run {
        let index = Index::new(
            target
                .existing()
                .await
                .context("reading the target's contacts")?,
        )
        .single_valued(target.single_valued());
        load::dry_run_counts(&prepared, &index, target.as_ref())
    } else {
        let store = store.context("opening the store")?;
        let digest = crate::import::run_digest(&bytes, &args.map);
        let progress = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(prepared.clients.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} clients, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let file_name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (counts, refused) = load::load(
            &prepared,
            target,
            LoadOptions {
                store: &store,
                clock,
                sync: config.sync.clone(),
                business_id: &config.business.id,
                digest: &digest,
                file_name: &file_name,
                progress,
                listing,
            },
        )
        .await
        .context("loading")?;
        problems.extend(refused);
        counts
    };
    println!("{}", counts.render(args.dry_run));
    if let Some(path) = &args.report {
        crate::import::report::write_csv(path, &problems)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{} problems listed in {}", problems.len(), path.display());
    } else if !problems.is_empty() {
        println!("{} problems; --report FILE lists them", problems.len());
    }
    Ok(())
}
