//! `zapis user`: the console's users and their passwords.

use super::*;

/// The shortest console password accepted.
const MIN_PASSWORD: usize = 10;

/// A new password: typed twice on a terminal, else the first line of standard input.
fn read_new_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    if password.len() > 256 {
        bail!("the password must have at most 256 bytes");
    }
    Ok(password)
}

pub(super) async fn user(cmd: UserCmd, store_url: Option<String>) -> anyhow::Result<()> {
    use crate::console::auth::hash_password;
    use crate::store::{ALL_BUSINESSES, Role};
    let config_of = |c: &DeploymentArg| load_deployment(&c.config);
    let open = |config: &DeploymentView| {
        let url = store_url
            .clone()
            .unwrap_or_else(|| config.deployment.store.url.clone());
        async move { Store::connect(&url).await.context("opening the store") }
    };
    let now = chrono::Utc::now();
    match cmd {
        UserCmd::Add {
            config,
            login,
            role,
            businesses,
        } => {
            let config = config_of(&config)?;
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?}: use one of owner, manager, marketer, operator")
            })?;
            let login = login.trim().to_string();
            if login.is_empty() || login.len() > 64 || login.chars().any(char::is_whitespace) {
                bail!("LOGIN must be 1 to 64 characters without spaces");
            }
            let businesses = match (businesses.is_empty(), &config.single) {
                (false, _) => businesses,
                (true, Some(single)) => vec![single.clone()],
                (true, None) => bail!(
                    "this deployment serves several businesses: name the ones the user sees \
                     with --business ID (repeatable), or --business '*' for all"
                ),
            };
            if let Some(b) = businesses
                .iter()
                .find(|b| b.as_str() != ALL_BUSINESSES && b.trim().is_empty())
            {
                bail!("--business {b:?} is empty");
            }
            let hash = hash_password(&read_new_password()?)?;
            let store = open(&config).await?;
            store
                .add_console_user(&login, &hash, role, &businesses, now)
                .await
                .with_context(|| format!("adding the user {login:?}"))?;
            println!(
                "user {login} added: {role} of {}; sign in at /console",
                businesses.join(", ")
            );
            store.close().await;
        }
        UserCmd::Passwd { config, login } => {
            let config = config_of(&config)?;
            let hash = hash_password(&read_new_password()?)?;
            let store = open(&config).await?;
            if !store.set_console_password(&login, &hash, now).await? {
                bail!("no user {login:?}");
            }
            println!("password of {login} changed; their sessions ended");
            store.close().await;
        }
        UserCmd::Remove { config, login } => {
            let config = config_of(&config)?;
            let store = open(&config).await?;
            if !store.remove_console_user(&login).await? {
                bail!("no user {login:?}");
            }
            println!("user {login} removed; their sessions ended");
            store.close().await;
        }
        UserCmd::List(config) => {
            let config = config_of(&config)?;
            let store = open(&config).await?;
            let users = store.console_users().await?;
            if users.is_empty() {
                println!("no users yet: add one with `zapis user add LOGIN --role owner`");
            } else {
                println!("{:<24} {:<9} businesses", "login", "role");
            }
            for u in users {
                println!("{:<24} {:<9} {}", u.login, u.role, u.businesses.join(", "));
            }
            store.close().await;
        }
    }
    Ok(())
}
