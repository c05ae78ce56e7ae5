//! `zapis check`: the configuration read, and with `--probe` every configured system asked.

use super::*;

pub(super) async fn check(arg: &ConfigArg, probe: bool) -> anyhow::Result<()> {
    let config = load(arg)?;
    let path = &arg.config;
    // A vendor's error may quote our request, key and all: every line is scrubbed.
    let scrubber = crate::secrets::installed();
    macro_rules! say {
        ($($arg:tt)*) => { println!("{}", scrubber.scrub(&format!($($arg)*))) };
    }
    macro_rules! say_raw {
        ($($arg:tt)*) => { print!("{}", scrubber.scrub(&format!($($arg)*))) };
    }
    say!("config {}: valid", path.display());
    let mut failures = 0;
    // Read-only: a missing or outdated store is reported, never created or migrated here.
    let (store, not_created) = match Store::open_existing(&config.store.url).await {
        // The vendors are still checked, on a throw-away store: a first check comes before
        // the first run.
        Err(e @ StoreError::Missing { .. }) => {
            say!("store: {e}");
            (Store::connect("sqlite::memory:").await, true)
        }
        other => (other, false),
    };
    let app = match &store {
        Ok(store) => App::on_store(config.clone(), store.clone(), Arc::new(SystemClock))
            .map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    match app {
        Ok(app) => {
            if !not_created {
                say!(
                    "store: reachable ({})",
                    crate::store::redact_url(&config.store.url)
                );
            }
            if let Some(dk) = &app.dikidi {
                let report = dk.check().await;
                if !report.ok() {
                    failures += 1;
                }
                say_raw!("{report}");
            } else if let Some(yc) = &app.yclients {
                match yc.check().await {
                    Ok(report) => {
                        say_raw!("{report}");
                        if report.company.timezone != config.business.timezone {
                            failures += 1;
                            say!(
                                "  error: business.timezone is {} but the company's timezone_name \
                                 is {}: clients would be shown times in the wrong zone; set \
                                 business.timezone = \"{}\"",
                                config.business.timezone,
                                report.company.timezone,
                                report.company.timezone
                            );
                        }
                        if yc.has_user_token() {
                            match yc.admin_read().await {
                                Ok(()) => say!("  admin calls (user token): accepted"),
                                Err(e) => {
                                    failures += 1;
                                    say!("  admin calls (user token): refused: {e}");
                                }
                            }
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        say!("booking (yclients): {e}");
                    }
                }
            } else {
                match app.booking.services().await {
                    Ok(services) => say!(
                        "booking ({}): reachable, {} services",
                        app.booking.system(),
                        services.len()
                    ),
                    Err(e) => {
                        failures += 1;
                        say!("booking ({}): {e}", app.booking.system());
                    }
                }
            }
        }
        Err(e) => {
            failures += 1;
            say!("store: {e}");
        }
    }
    if let (Some(crm), Ok(store)) = (&config.crm, &store) {
        let store = store.clone();
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
        let business = &config.business.id;
        let line = match (&crm.amocrm, &crm.bitrix24) {
            (Some(amo), _) if crm.system == crate::crm::config::CrmSystem::Amocrm => {
                match crate::crm::amocrm::AmoCrm::new(amo.clone(), store, business, clock) {
                    Ok(client) => match client.check().await {
                        Ok(r) => {
                            let head = format!(
                                "crm (amocrm): reachable, account {} ({}), pipeline {} ({}) with {} stages",
                                r.account_name,
                                r.account_id,
                                r.pipeline_name,
                                r.pipeline_id,
                                r.stages.len()
                            );
                            // The field the booking id search depends on: found or created
                            // here, so the first booking finds it settled.
                            match client.setup().await {
                                Ok(setup) => format!("{head}\n{}", setup.to_string().trim_end()),
                                Err(e) => format!(
                                    "crm (amocrm): booking id field not settled: {}",
                                    crm_status(&e)
                                ),
                            }
                        }
                        Err(e) => format!("crm (amocrm): {}", crm_status(&e)),
                    },
                    Err(e) => format!("crm (amocrm): {e}"),
                }
            }
            (_, Some(b24)) => {
                match crate::crm::bitrix24::Bitrix24::new(b24.clone(), store, business, clock) {
                    Ok(client) => match client.check().await {
                        Ok(r) => format!("crm (bitrix24): reachable\n{r}"),
                        Err(e) => format!("crm (bitrix24): {}", crm_status(&e)),
                    },
                    Err(e) => format!("crm (bitrix24): {e}"),
                }
            }
            _ => "crm: no section for the configured system".to_string(),
        };
        if !line.contains("reachable") || line.contains("unreachable") {
            failures += 1;
        }
        say!("{line}");
    }
    if let Some(school) = &config.school {
        if let Some(alfa) = &school.alfacrm {
            let line = match crate::school::alfacrm::AlfaCrm::new(alfa.clone()) {
                Ok(client) => match client.check().await {
                    Ok(report) => format!("school (alfacrm): reachable, {report}"),
                    Err(e) => {
                        failures += 1;
                        format!("school (alfacrm): {e}")
                    }
                },
                Err(e) => {
                    failures += 1;
                    format!("school (alfacrm): {e}")
                }
            };
            say!("{line}");
        }
        if let Some(gc) = &school.getcourse {
            let line = match crate::school::getcourse::GetCourse::new(gc.clone()) {
                Ok(client) => match client.check().await {
                    Ok(report) => format!("school (getcourse): reachable, {report}"),
                    Err(e) => {
                        failures += 1;
                        format!("school (getcourse): {e}")
                    }
                },
                Err(e) => {
                    failures += 1;
                    format!("school (getcourse): {e}")
                }
            };
            say!("{line}");
        }
    }
    if let Some(onec) = &config.onec {
        let (lines, ok) = crate::accounting::cli::check_lines(onec).await;
        if !ok {
            failures += 1;
        }
        say_raw!("{lines}");
    }
    if let Some(tg) = &config.telegram {
        let status = telegram_status(tg).await;
        if !status.starts_with("reachable") {
            failures += 1;
        }
        say!("telegram: {status}");
    }
    if let Some(max) = &config.max {
        let status = crate::messenger::max::status(max).await;
        if !status.starts_with("reachable") {
            failures += 1;
        }
        say!("max: {status}");
    }
    if let Some(support) = &config.support {
        // A wrong admin chat id would only show as questions that never arrive.
        if let (Some(tg), Some(chat)) = (&config.telegram, support.telegram_chat_id) {
            match telegram_admin_chat(tg, chat).await {
                Ok(title) => say!("support: Telegram admin chat «{title}» ({chat}) reachable"),
                Err(why) => {
                    failures += 1;
                    say!(
                        "support: the bot cannot see Telegram chat {chat} ({why}); add the bot to that group"
                    );
                }
            }
        }
        if let (Some(max), Some(chat)) = (&config.max, support.max_chat_id) {
            match crate::messenger::max::admin_chat_status(max, chat).await {
                Ok(title) => say!("support: MAX admin chat «{title}» ({chat}) reachable"),
                Err(why) => {
                    failures += 1;
                    say!(
                        "support: the bot cannot see MAX chat {chat} ({why}); add the bot to that chat"
                    );
                }
            }
        }
    }
    if probe {
        let table = crate::probe::probe(&config, store.as_ref().ok()).await;
        print!("{table}");
        if !table.ok() {
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} system(s) failed the check");
    }
    Ok(())
}

/// The three answers `zapis check` gives for a system.
fn crm_status(e: &crate::crm::CrmError) -> String {
    if e.is_auth() {
        format!("bad credentials: {e}")
    } else if e.is_transient() {
        format!("unreachable: {e}")
    } else {
        format!("misconfigured: {e}")
    }
}

/// Asks Telegram's getMe whether the token is good.
async fn telegram_status(tg: &TelegramConfig) -> String {
    let url = format!(
        "{}/bot{}/getMe",
        tg.api_url.as_str().trim_end_matches('/'),
        tg.token.expose_secret()
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let Ok(client) = client else {
        return "unreachable: cannot build an HTTP client".into();
    };
    match client.post(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let name = body["result"]["username"].as_str().unwrap_or("?");
            format!("reachable (@{name})")
        }
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 404) => {
            "bad credentials (the token was refused)".into()
        }
        Ok(resp) => format!("unreachable: HTTP {}", resp.status()),
        // The error text would contain the URL and with it the token.
        Err(e) if e.is_timeout() => "unreachable: timed out".into(),
        Err(_) => format!("unreachable: cannot connect to {}", tg.api_url),
    }
}

/// The title of the `[support]` admin chat in Telegram, or why the bot cannot see it:
/// `getChat` answers only for a chat the bot is in.
async fn telegram_admin_chat(tg: &TelegramConfig, chat_id: i64) -> Result<String, String> {
    let url = format!(
        "{}/bot{}/getChat",
        tg.api_url.as_str().trim_end_matches('/'),
        tg.token.expose_secret()
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|_| "cannot build an HTTP client".to_string())?;
    match client
        .post(&url)
        .json(&serde_json::json!({ "chat_id": chat_id }))
        .send()
        .await
    {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if ok {
                Ok(body["result"]["title"].as_str().unwrap_or("?").to_string())
            } else {
                Err(body["description"]
                    .as_str()
                    .unwrap_or("refused")
                    .to_string())
            }
        }
        // The error text would contain the URL and with it the token.
        Err(e) if e.is_timeout() => Err("timed out".into()),
        Err(_) => Err(format!("cannot connect to {}", tg.api_url)),
    }
}
