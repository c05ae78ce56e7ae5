//! `zapis link`: tracked links.

use super::*;

pub(super) async fn link(cmd: LinkCmd) -> anyhow::Result<()> {
    match cmd {
        LinkCmd::Create {
            config,
            name,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_content,
            utm_term,
        } => {
            let config = load(&config)?;
            let store = Store::connect(&config.store.url)
                .await
                .context("opening the store")?;
            let token = TrackedLink::new_token();
            let link = TrackedLink {
                token: token.clone(),
                name: name.clone(),
                utm: Utm {
                    source: utm_source,
                    medium: utm_medium,
                    campaign: utm_campaign,
                    content: utm_content,
                    term: utm_term,
                },
            };
            store
                .create_tracked_link(&config.business.id, &link, chrono::Utc::now())
                .await
                .with_context(|| format!("creating the link {name:?}"))?;
            let tg_bot = config
                .telegram
                .as_ref()
                .and_then(|t| t.bot_username.clone())
                .unwrap_or_else(|| "<bot>".into());
            let max_bot = config
                .max
                .as_ref()
                .and_then(|m| m.bot_username.clone())
                .unwrap_or_else(|| tg_bot.clone());
            println!("link {name:?} created, token {token}");
            println!("Telegram: https://t.me/{tg_bot}?start={token}");
            println!("MAX:      https://max.ru/{max_bot}?start={token}");
            Ok(())
        }
        LinkCmd::List(config) => {
            let config = load(&config)?;
            let store = Store::open_existing(&config.store.url).await?;
            let links = store.tracked_links(&config.business.id).await?;
            if links.is_empty() {
                println!(
                    "no tracked links yet: create one with `zapis link create --name NAME --utm-source …`"
                );
            }
            for s in links {
                let u = &s.link.utm;
                let utm: Vec<String> = [
                    ("utm_source", &u.source),
                    ("utm_medium", &u.medium),
                    ("utm_campaign", &u.campaign),
                    ("utm_content", &u.content),
                    ("utm_term", &u.term),
                ]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
                println!(
                    "{}\t{}\t{}\tbookings: {}",
                    s.link.name,
                    s.link.token,
                    utm.join("&"),
                    s.bookings
                );
            }
            Ok(())
        }
    }
}
