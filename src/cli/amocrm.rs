//! `zapis amocrm`: the amoCRM account's setup.

use super::*;

pub(super) async fn amocrm(cmd: AmoCmd) -> anyhow::Result<()> {
    let (path, code, url) = match &cmd {
        AmoCmd::Auth { config, code } => (config, Some(code.clone()), None),
        AmoCmd::Webhook { config, url } => (config, None, Some(url.clone())),
        AmoCmd::Setup(config) => (config, None, None),
    };
    let config = load(path)?;
    let Some(amo) = config.crm.as_ref().and_then(|c| c.amocrm.clone()) else {
        bail!("no [crm.amocrm] section in {}", path.config.display());
    };
    let store = Store::connect(&config.store.url)
        .await
        .context("opening the store")?;
    if let Some(code) = code {
        crate::crm::amocrm::authorize(amo.clone(), store.clone(), &config.business.id, &code)
            .await
            .context("exchanging the authorization code")?;
        println!("amoCRM tokens stored; they are refreshed automatically from now on");
    }
    if let Some(url) = url {
        let client = crate::crm::amocrm::AmoCrm::new(
            amo.clone(),
            store.clone(),
            &config.business.id,
            Arc::new(SystemClock),
        )?;
        client
            .register_webhook(&url, &["status_lead", "delete_lead"])
            .await
            .context("registering the webhook")?;
        println!("amoCRM will send lead status changes to {url}");
    }
    if matches!(cmd, AmoCmd::Setup(_)) {
        let client = crate::crm::amocrm::AmoCrm::new(
            amo,
            store,
            &config.business.id,
            Arc::new(SystemClock),
        )?;
        let report = client
            .setup()
            .await
            .context("settling the booking id field")?;
        print!("{report}");
    }
    Ok(())
}
