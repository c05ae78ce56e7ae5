//! `zapis onec`: 1C's exchange, checked and read.

use super::*;

pub(super) async fn onec(cmd: OnecCmd) -> anyhow::Result<()> {
    let path = match &cmd {
        OnecCmd::Check(c) => c,
        OnecCmd::Stock { config, .. } => config,
    };
    let config = load(path)?;
    let path = &path.config;
    let Some(onec_config) = config.onec.clone() else {
        bail!("no [onec] section in {}", path.display());
    };
    let odata = match onec_config.mode {
        crate::accounting::config::OnecMode::Odata => Some(
            crate::accounting::onec_odata::OnecOdata::new(&onec_config)
                .context("setting up the 1C OData client")?,
        ),
        crate::accounting::config::OnecMode::Commerceml => None,
    };
    let mut out = std::io::stdout().lock();
    match cmd {
        OnecCmd::Check(_) => {
            let Some(odata) = &odata else {
                bail!(
                    "onec.mode is \"commerceml\": 1C calls us at /1c/exchange, nothing to check from here"
                );
            };
            let ok = crate::accounting::cli::check(&onec_config, odata, &mut out)
                .await
                .context("checking 1C")?;
            if !ok {
                bail!("some configured 1C object names are not published; fix [onec.objects]");
            }
        }
        OnecCmd::Stock { alert, .. } => {
            let app = App::build(config, Arc::new(SystemClock))
                .await
                .context("opening the store")?;
            let alerts = app.alerts();
            crate::accounting::cli::stock(
                &onec_config,
                odata.as_ref(),
                &app.store,
                &app.settings.business.id,
                alert.then_some(&alerts),
                chrono::Utc::now(),
                &mut out,
            )
            .await
            .context("reading the stock")?;
        }
    }
    Ok(())
}
