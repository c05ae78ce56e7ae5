//! The `zapis` command line.
//!
//! The folder: this file holds the clap definitions, logging setup and the dispatch of every
//! command; one file per command group: `run.rs` (`run` for one business, `demo`), `fleet.rs`
//! (`run` for a deployment of several), `business.rs` (`business`), `check.rs`, `import.rs`,
//! `users.rs` (`user`), `clients.rs` (`forget`, `bookings`), `amocrm.rs`, `onec.rs`, `link.rs`.
//! The queue, journal and worker commands live in `sync::cli`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::{Config, Layout};
use crate::domain::{System, Utm};
use crate::messenger::config::TelegramConfig;
use crate::store::LoopLease;
use crate::store::{Store, StoreError, TrackedLink};
use crate::sync::cli::{
    JournalArgs, QueueArgs, WorkerArgs, journal_command, queue_command, worker_command,
};

mod amocrm;
mod business;
mod check;
mod clients;
mod fleet;
mod import;
mod link;
mod onec;
mod run;
mod users;

use amocrm::amocrm;
use business::{business, check_fleet};
use check::check;
use clients::{bookings, forget};
use fleet::run_fleet;
use import::import;
use link::link;
use onec::onec;
use run::{demo, run};
use users::user;

#[derive(Debug, Parser)]
#[command(
    name = "zapis",
    version,
    about = "Booking bot and integration hub for salons, clinics and schools"
)]
pub struct Cli {
    /// Store URL for queue, journal and worker commands, instead of the config's `store.url`.
    #[arg(long, global = true)]
    store: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Path to the TOML configuration (every key is documented in zapis.example.toml).
    #[arg(long, short, env = "ZAPIS_CONFIG", default_value = "zapis.toml")]
    config: PathBuf,
    /// The business this is about, when the file is a deployment of several (`[businesses]`).
    #[arg(long, env = "ZAPIS_BUSINESS")]
    business: Option<String>,
}

/// The configuration of commands about the deployment as a whole (its store, its users).
#[derive(Debug, Args)]
struct DeploymentArg {
    /// Path to the TOML configuration (every key is documented in zapis.example.toml).
    #[arg(long, short, env = "ZAPIS_CONFIG", default_value = "zapis.toml")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also ask the live accounts, read-only, what only they can tell (YClients' partner id
    /// need and zone, 1C's required attributes, …) and print what zapis will do about each.
    /// Nothing is written to any vendor.
    #[arg(long)]
    probe: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Chat with the built-in sandbox salon in this terminal. No tokens, no network.
    Demo {
        /// Store URL; a fresh temporary SQLite file when omitted.
        #[arg(long)]
        store: Option<String>,
        /// Deep-link payload to start with, as if the client came from a tracked link.
        #[arg(long)]
        start: Option<String>,
        /// The client's language (`ru`, `en`).
        #[arg(long)]
        lang: Option<String>,
    },
    /// Run the service: the messenger bots configured in the file.
    Run(ConfigArg),
    /// Validate the configuration and say, per configured system, whether it answers.
    Check(CheckArgs),
    /// The businesses of a deployment of several (`[businesses]` in the file): list them, or
    /// check one's file.
    #[command(subcommand)]
    Business(BusinessCmd),
    /// Create or update the store's tables, then exit.
    Migrate(DeploymentArg),
    /// Tracked deep links for marketers.
    #[command(subcommand)]
    Link(LinkCmd),
    /// The delivery queue: counts per state and system; `queue retry` revives dead jobs.
    Queue {
        #[command(flatten)]
        config: DeploymentArg,
        #[command(flatten)]
        args: QueueArgs,
    },
    /// The audit journal of every delivery attempt.
    Journal {
        #[command(flatten)]
        config: DeploymentArg,
        #[command(flatten)]
        args: JournalArgs,
    },
    /// Run delivery workers alone: for the configured systems, or with `--http-target` the
    /// generic `http` connector.
    Worker {
        #[command(flatten)]
        config: DeploymentArg,
        #[command(flatten)]
        args: Box<WorkerArgs>,
    },
    /// Each booking with its state in our store, the schedule, the CRM and the chat.
    Bookings {
        #[command(flatten)]
        config: ConfigArg,
        /// Only visits still ahead and not cancelled.
        #[arg(long)]
        upcoming: bool,
        /// Only this client's bookings (any phone format).
        #[arg(long)]
        client: Option<String>,
    },
    /// A consistent copy of the SQLite store into FILE, taken while `zapis run` keeps running
    /// (PostgreSQL: use `pg_dump`, docs/deploy.md).
    Backup {
        #[command(flatten)]
        config: DeploymentArg,
        /// Where the copy goes; it must not exist yet.
        file: PathBuf,
    },
    /// Erase a client's personal data from the store (152-ФЗ): their card, chats, transcript
    /// and what stored webhooks and finished jobs say about them. Deliveries about them still
    /// on their way finish first; the erasure follows at once (under `zapis run`).
    Forget {
        #[command(flatten)]
        config: ConfigArg,
        /// The client's phone, in any usual format.
        phone: String,
    },
    /// The console's users (`/console`): who may sign in, with which role, for which business.
    #[command(subcommand)]
    User(UserCmd),
    /// MAX messenger administration.
    #[command(subcommand)]
    Max(MaxCmd),
    /// AmoCRM administration.
    #[command(subcommand)]
    Amocrm(AmoCmd),
    /// Import a client base (CSV, XLSX, a 1C XML or OData JSON export) into the CRM or the
    /// schedule: normalised, deduplicated, resumable (docs/import.md).
    Import(ImportArgs),
    /// 1C: check the OData publication against the configured object names; show stock.
    #[command(subcommand)]
    Onec(OnecCmd),
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a user. The password is asked for on a terminal, else read as the first line of
    /// standard input.
    Add {
        #[command(flatten)]
        config: DeploymentArg,
        login: String,
        /// owner (everything), manager (bookings, clients), marketer (sources, links),
        /// operator (deliveries, setup).
        #[arg(long)]
        role: String,
        /// A business the user may see (repeatable); `*` for all. The configured business
        /// when omitted.
        #[arg(long = "business")]
        businesses: Vec<String>,
    },
    /// Set a new password (read as for `add`); the user's sessions end.
    Passwd {
        #[command(flatten)]
        config: DeploymentArg,
        login: String,
    },
    /// Remove a user; their sessions end.
    Remove {
        #[command(flatten)]
        config: DeploymentArg,
        login: String,
    },
    /// List users with their role and businesses.
    List(DeploymentArg),
}

#[derive(Debug, Subcommand)]
enum BusinessCmd {
    /// Each business file: its id, name, schedule, CRM and bots, or what is wrong with it.
    List(DeploymentArg),
    /// Read one business's file and say whether it is valid; with `--probe`, also ask its
    /// systems, read-only, as `zapis check --probe` does.
    Check {
        #[command(flatten)]
        config: DeploymentArg,
        /// The business's id: its file's name in the businesses folder.
        id: String,
        #[arg(long)]
        probe: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OnecCmd {
    /// Log in to 1C's OData interface and list the configured object names next to the ones
    /// the base publishes (`$metadata`), marking mismatches.
    Check(ConfigArg),
    /// Show the stock: the configured register's balance (OData) or the offers 1C sent
    /// (CommerceML).
    Stock {
        #[command(flatten)]
        config: ConfigArg,
        /// Also send the low-stock alert for lines at or below `onec.low_stock_threshold`
        /// (for a periodic run).
        #[arg(long)]
        alert: bool,
    },
}

#[derive(Debug, Args)]
struct ImportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The file: .csv (any delimiter, UTF-8 or Windows-1251), .xlsx, 1C CommerceML XML or
    /// OData JSON of Catalog_Контрагенты.
    file: PathBuf,
    /// Where the clients go.
    #[arg(long, value_enum)]
    into: ImportInto,
    /// Read, normalise, deduplicate and match against the target, but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write a CSV with a row per problem here.
    #[arg(long, value_name = "report.csv")]
    report: Option<PathBuf>,
    /// A column's meaning, overriding the guess from its header: `phone=Тел. моб.`,
    /// `name=3` (by 1-based number). Fields: name, last_name, first_name, middle_name,
    /// phone, email, birthday, comment. Repeatable.
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    map: Vec<crate::import::MapOverride>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImportInto {
    Amocrm,
    Bitrix24,
    Yclients,
}

#[derive(Debug, Subcommand)]
enum AmoCmd {
    /// Exchange an authorization code for the first OAuth token pair and store it.
    Auth {
        #[command(flatten)]
        config: ConfigArg,
        /// The code amoCRM shows after the integration is installed (valid 20 minutes).
        #[arg(long)]
        code: String,
    },
    /// Find the lead field that holds our booking id (by name) or create it, keep its id in
    /// the store, and list which tracking (UTM) fields the account has.
    Setup(ConfigArg),
    /// Ask amoCRM to send lead status changes to our webhook URL.
    Webhook {
        #[command(flatten)]
        config: ConfigArg,
        /// Our public URL: https://HOST/webhooks/amocrm/<http.webhook_secret>
        #[arg(long)]
        url: url::Url,
    },
}

#[derive(Debug, Subcommand)]
enum MaxCmd {
    /// Register our webhook with MAX (POST /subscriptions) using max.webhook_url and
    /// max.webhook_secret. While subscribed, MAX long polling does not work.
    Subscribe {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: crate::messenger::max::SubscribeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum LinkCmd {
    /// Store a full UTM set under a short token and print the links that carry it.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// A name for people: `spring`, `vk-ads-march`.
        #[arg(long)]
        name: String,
        #[arg(long)]
        utm_source: Option<String>,
        #[arg(long)]
        utm_medium: Option<String>,
        #[arg(long)]
        utm_campaign: Option<String>,
        #[arg(long)]
        utm_content: Option<String>,
        #[arg(long)]
        utm_term: Option<String>,
    },
    /// List tracked links with the number of bookings each brought.
    List(ConfigArg),
}

pub fn init_tracing(default: &str) {
    init_tracing_as(default, crate::config::LogFormat::Text);
}

/// The log on standard error, scrubbed of secrets: colour only when a person is watching (a
/// file or a collector gets no escape codes), JSON lines when a collector asks for them.
pub fn init_tracing_as(default: &str, format: crate::config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::secrets::ScrubbingStderr);
    let _ = match format {
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Demo { store, start, lang } => {
            init_tracing("warn");
            demo(store, start, lang).await
        }
        Cmd::Run(args) => match layout(&args.config)? {
            Layout::Fleet(fleet) => {
                init_tracing_as("info", fleet.deployment.log.format);
                run_fleet(*fleet, args.business).await
            }
            Layout::Single(_) => {
                let config = load(&args)?;
                init_tracing_as("info", config.log.format);
                run(config).await
            }
        },
        Cmd::Check(args) => {
            init_tracing("warn");
            match (layout(&args.config.config)?, &args.config.business) {
                (Layout::Fleet(fleet), None) => check_fleet(&fleet, args.probe).await,
                _ => check(&args.config, args.probe).await,
            }
        }
        Cmd::Business(cmd) => {
            init_tracing("warn");
            business(cmd).await
        }
        Cmd::Migrate(args) => {
            init_tracing("info");
            let config = load_deployment(&args.config)?.deployment;
            let url = crate::store::redact_url(&config.store.url);
            let store = Store::open(&config.store.url)
                .await
                .context("opening the store")?;
            let before = store.schema_version().await?;
            store.close().await;
            println!(
                "store {url}: schema version {}, this zapis: {}",
                before.current, before.target
            );
            if before.current == before.target {
                println!("store is up to date");
                return Ok(());
            }
            let store = Store::connect(&config.store.url)
                .await
                .context("migrating the store")?;
            let after = store.schema_version().await?;
            println!("store migrated to schema version {}", after.current);
            Ok(())
        }
        Cmd::Link(cmd) => {
            init_tracing("warn");
            link(cmd).await
        }
        Cmd::Queue { config, args } => {
            init_tracing("warn");
            let store = sync_store(cli.store, &config).await?;
            let mut out = std::io::stdout().lock();
            queue_command(&store, &args, chrono::Utc::now(), &mut out).await?;
            Ok(())
        }
        Cmd::Bookings {
            config,
            upcoming,
            client,
        } => {
            init_tracing("warn");
            bookings(&config, upcoming, client).await
        }
        Cmd::Backup { config, file } => {
            init_tracing("warn");
            let config = load_deployment(&config.config)?.deployment;
            let store = Store::open_existing(&config.store.url).await?;
            store
                .backup_into(&file)
                .await
                .with_context(|| format!("backing up into {}", file.display()))?;
            println!("store copied into {}", file.display());
            Ok(())
        }
        Cmd::User(cmd) => {
            init_tracing("warn");
            user(cmd, cli.store).await
        }
        Cmd::Forget { config, phone } => {
            init_tracing("warn");
            forget(&config, &phone).await
        }
        Cmd::Journal { config, args } => {
            init_tracing("warn");
            let store = sync_store(cli.store, &config).await?;
            let mut out = std::io::stdout().lock();
            journal_command(&store, &args, chrono::Utc::now(), &mut out).await?;
            Ok(())
        }
        Cmd::Worker { config, args } => {
            init_tracing("info");
            if args.http_target.is_some() {
                // A service, like `zapis run`: it brings the store to this binary's schema.
                let url = match cli.store {
                    Some(url) => url,
                    None => load_deployment(&config.config)?.deployment.store.url,
                };
                let store = Store::connect(&url).await.context("opening the store")?;
                worker_command(store, &args).await?;
            } else {
                // Workers for the configured systems, e.g. a second process beside
                // `zapis run` sharing its PostgreSQL queue.
                // In a deployment of several businesses, `--business` names whose jobs these
                // are (as it does with `--http-target`).
                let fleet = matches!(layout(&config.config)?, Layout::Fleet(_));
                let mut config = load(&ConfigArg {
                    config: config.config,
                    business: fleet.then(|| args.business.to_string()),
                })?;
                if let Some(url) = cli.store {
                    config.store.url = url;
                }
                let policy = crate::sync::cli::retry_overrides(config.sync.retry_policy(), &args)?;
                let app = App::build(config, Arc::new(SystemClock))
                    .await
                    .context("opening the store")?;
                let engine = app
                    .engine()
                    .with_policy(policy)
                    .with_shutdown_grace(args.shutdown_grace);
                crate::sync::cli::run_until_signal(engine).await?;
                app.store.close().await;
            }
            Ok(())
        }
        Cmd::Amocrm(cmd) => {
            init_tracing("warn");
            amocrm(cmd).await
        }
        Cmd::Import(args) => {
            init_tracing("warn");
            import(args).await
        }
        Cmd::Onec(cmd) => {
            init_tracing("warn");
            onec(cmd).await
        }
        Cmd::Max(MaxCmd::Subscribe { config, args }) => {
            init_tracing("warn");
            let config = load(&config)?;
            let Some(max) = &config.max else {
                bail!("no [max] section in the configuration");
            };
            let done = crate::messenger::max::subscribe(max, &args)
                .await
                .context("subscribing to MAX webhooks")?;
            println!("{done}");
            Ok(())
        }
    }
}

/// The store named by `--store`, else the configuration's; it must exist at this binary's
/// schema version (these commands only read, and never create or migrate it).
async fn sync_store(store: Option<String>, config: &DeploymentArg) -> anyhow::Result<Store> {
    let url = match store {
        Some(url) => url,
        None => load_deployment(&config.config)?.deployment.store.url,
    };
    Ok(Store::open_existing(&url).await?)
}

fn layout(path: &std::path::Path) -> anyhow::Result<Layout> {
    Layout::load(path).with_context(|| format!("reading configuration from {}", path.display()))
}

/// One business's whole configuration: the single file's, or in a deployment of several the
/// one `--business` names.
fn load(arg: &ConfigArg) -> anyhow::Result<Config> {
    let path = &arg.config;
    let config = match layout(path)? {
        Layout::Single(config) => {
            if let Some(id) = &arg.business
                && *id != config.business.id
            {
                bail!(
                    "{} serves the business `{}`, not `{id}`",
                    path.display(),
                    config.business.id
                );
            }
            *config
        }
        Layout::Fleet(fleet) => {
            // Until a business is read, the deployment's own secrets are the ones to hide.
            crate::secrets::install(crate::secrets::Scrubber::from_parts(&fleet.deployment, []));
            let Some(id) = &arg.business else {
                bail!(
                    "{} is a deployment of several businesses ({}): name one with --business ID \
                     (`zapis business list` lists them)",
                    path.display(),
                    fleet.dir.display()
                );
            };
            fleet.business(id)?.config?
        }
    };
    // From here on the log, and the error printed on exit, never show a configured secret.
    crate::secrets::install(crate::secrets::Scrubber::from_config(&config));
    Ok(config)
}

/// What commands about the whole deployment read: the deployment's settings, and the business
/// when the file serves only one.
struct DeploymentView {
    deployment: crate::config::Deployment,
    single: Option<String>,
}

fn load_deployment(path: &std::path::Path) -> anyhow::Result<DeploymentView> {
    let view = match layout(path)? {
        Layout::Single(config) => {
            let (deployment, business) = config.into_parts();
            DeploymentView {
                deployment,
                single: Some(business.business.id.to_string()),
            }
        }
        Layout::Fleet(fleet) => DeploymentView {
            deployment: fleet.deployment,
            single: None,
        },
    };
    crate::secrets::install(crate::secrets::Scrubber::from_parts(&view.deployment, []));
    Ok(view)
}
