//! The `zapis` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::domain::Utm;
use crate::messenger::config::TelegramConfig;
use crate::store::LoopLease;
use crate::store::{Store, StoreError, TrackedLink};
use crate::sync::cli::{
    JournalArgs, QueueArgs, WorkerArgs, journal_command, queue_command, worker_command,
};

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
    /// Create or update the store's tables, then exit.
    Migrate(ConfigArg),
    /// Tracked deep links for marketers.
    #[command(subcommand)]
    Link(LinkCmd),
    /// The delivery queue: counts per state and system; `queue retry` revives dead jobs.
    Queue {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: QueueArgs,
    },
    /// The audit journal of every delivery attempt.
    Journal {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: JournalArgs,
    },
    /// Run delivery workers alone: for the configured systems, or with `--http-target` the
    /// generic `http` connector.
    Worker {
        #[command(flatten)]
        config: ConfigArg,
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
        config: ConfigArg,
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
        config: ConfigArg,
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
        config: ConfigArg,
        login: String,
    },
    /// Remove a user; their sessions end.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        login: String,
    },
    /// List users with their role and businesses.
    List(ConfigArg),
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
        Cmd::Run(args) => {
            let config = load(&args.config)?;
            init_tracing_as("info", config.log.format);
            run(config).await
        }
        Cmd::Check(args) => {
            init_tracing("warn");
            check(&args.config.config, args.probe).await
        }
        Cmd::Migrate(args) => {
            init_tracing("info");
            let config = load(&args.config)?;
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
            bookings(&config.config, upcoming, client).await
        }
        Cmd::Backup { config, file } => {
            init_tracing("warn");
            let config = load(&config.config)?;
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
            forget(&config.config, &phone).await
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
                    None => load(&config.config)?.store.url,
                };
                let store = Store::connect(&url).await.context("opening the store")?;
                worker_command(store, &args).await?;
            } else {
                // Workers for the configured systems, e.g. a second process beside
                // `zapis run` sharing its PostgreSQL queue.
                let mut config = load(&config.config)?;
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
            let config = load(&config.config)?;
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

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;

    use crate::import::load::{self, ImportTarget, Index, LoadOptions};
    use crate::import::targets::{AmoTarget, Bitrix24Target, YclientsTarget};

    let config = load(&args.config.config)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let records = crate::import::read_bytes(&bytes, &args.map)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let prepared = crate::import::prepare(records);
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    // Opened without migrating for a dry run: it must not write, not even the schema.
    let open_store = || async {
        if args.dry_run {
            Store::open(&config.store.url).await
        } else {
            Store::connect(&config.store.url).await
        }
        .context("opening the store")
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
            Arc::new(YclientsTarget::new(client).map_err(|e| anyhow::anyhow!(e))?)
        }
    };
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
        let store = Store::connect(&config.store.url)
            .await
            .context("opening the store")?;
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

/// The store named by `--store`, else the configuration's; it must exist at this binary's
/// schema version (these commands only read, and never create or migrate it).
async fn sync_store(store: Option<String>, config: &ConfigArg) -> anyhow::Result<Store> {
    let url = match store {
        Some(url) => url,
        None => load(&config.config)?.store.url,
    };
    Ok(Store::open_existing(&url).await?)
}

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

async fn user(cmd: UserCmd, store_url: Option<String>) -> anyhow::Result<()> {
    use crate::console::auth::hash_password;
    use crate::store::{ALL_BUSINESSES, Role};
    let config_of = |c: &ConfigArg| load(&c.config);
    let open = |config: &Config| {
        let url = store_url
            .clone()
            .unwrap_or_else(|| config.store.url.clone());
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
            let businesses = if businesses.is_empty() {
                vec![config.business.id.clone()]
            } else {
                businesses
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

async fn forget(path: &std::path::Path, phone: &str) -> anyhow::Result<()> {
    use crate::store::forget::Forgot;
    let config = load(path)?;
    let phone = crate::normalize::Phone::parse(phone).context("PHONE is not a phone number")?;
    let store = Store::open_existing(&config.store.url).await?;
    let forgot = store
        .forget(&config.business.id, &phone, chrono::Utc::now())
        .await
        .context("erasing the client")?;
    match forgot {
        Forgot::Erased(e) => {
            println!(
                "{}: erased. {e}. The journal records the erasure.",
                phone.masked()
            );
        }
        Forgot::Waiting { deliveries } => {
            println!(
                "{}: {deliveries} deliveries about this client are still on their way. The \
                 erasure is recorded and runs within seconds of the last one ending, while \
                 `zapis run` is running (at the latest when they are given up after \
                 sync.max_age).",
                phone.masked()
            );
        }
    }
    println!(
        "The CRM and the schedule keep what the business holds there: erase the client there too."
    );
    Ok(())
}

async fn bookings(
    path: &std::path::Path,
    upcoming: bool,
    client: Option<String>,
) -> anyhow::Result<()> {
    let config = load(path)?;
    let client = client
        .map(|c| crate::normalize::Phone::parse(&c))
        .transpose()
        .context("--client is not a phone number")?;
    let store = Store::open_existing(&config.store.url).await?;
    let schedule = match config.booking.system {
        crate::config::BookingSystemKind::Sandbox => "sandbox",
        crate::config::BookingSystemKind::Yclients => "yclients",
        crate::config::BookingSystemKind::Dikidi => "dikidi",
    };
    let crm = config.crm.as_ref().map(|c| match c.system {
        crate::crm::config::CrmSystem::Amocrm => "amocrm",
        crate::crm::config::CrmSystem::Bitrix24 => "bitrix24",
    });
    let text = crate::lifecycle::report::bookings_report(
        &store,
        &config.business.id,
        schedule,
        crm,
        config.business.timezone,
        &crate::lifecycle::report::BookingsFilter { upcoming, client },
        chrono::Utc::now(),
    )
    .await
    .context("reading bookings")?;
    print!("{text}");
    store.close().await;
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = Config::load(path)
        .with_context(|| format!("reading configuration from {}", path.display()))?;
    // From here on the log, and the error printed on exit, never show a configured secret.
    crate::secrets::install(crate::secrets::Scrubber::from_config(&config));
    Ok(config)
}

async fn demo(
    store: Option<String>,
    start: Option<String>,
    lang: Option<String>,
) -> anyhow::Result<()> {
    // The temp dir lives until the demo ends, then takes its database with it.
    let tmp = tempfile::tempdir().context("creating a temporary directory for the demo store")?;
    let url = match store {
        Some(url) => url,
        None => format!("sqlite://{}", tmp.path().join("demo.db").display()),
    };
    let config = Config::demo(&url);
    let app = App::build(config, Arc::new(SystemClock))
        .await
        .context("opening the demo store")?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    crate::messenger::console::run(
        &app.conversations,
        stdin,
        tokio::io::stdout(),
        start,
        lang.as_deref(),
    )
    .await
    .context("running the demo conversation")?;
    app.store.close().await;
    Ok(())
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    adopt_schedule_timezone(&mut config).await;
    // Without a messenger the HTTP server (webhooks, landing forms) is the whole service;
    // without either there is nothing to serve.
    if config.telegram.is_none() && config.max.is_none() && config.http.is_none() {
        bail!(
            "nothing to run: no messenger and no [http] section are configured (add a [telegram] or [max] section with `token`, or [http] with `listen` for webhooks and forms)"
        );
    }
    let app = App::build(config, Arc::new(SystemClock))
        .await
        .context("opening the store")?;
    tracing::info!(business = %app.config.business.name, "zapis is running");
    if !app.config.privacy.consent {
        tracing::warn!(
            "privacy.consent = false: the bot asks clients for their phone and name without \
             asking their consent to the processing of personal data (152-ФЗ); collect it some \
             other way"
        );
    }
    if let Some(crm) = &app.crm {
        // Settled now so the first booking does not wait on it; a failure here is retried by
        // the first CRM job, which needs the same.
        if let Err(e) = crm.prepare().await {
            tracing::warn!(system = crm.system(), error = %e, "CRM not prepared yet; the first CRM job tries again");
        }
    }
    // Deliveries and webhooks run beside the bots and stop after them.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine = Arc::new(app.engine());
    let systems = engine.systems().to_vec();
    let engine_task = tokio::spawn(engine.run(stop_rx.clone()));
    let metrics = match &app.config.http {
        Some(http) if http.metrics || http.metrics_listen.is_some() => {
            Some(crate::metrics::install().context("starting the metrics recorder")?)
        }
        _ => None,
    };
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut metrics_task = None;
    let http_task = app.config.http.as_ref().map(|http| -> anyhow::Result<_> {
        let mut state = app.http_state(http.webhook_secret.clone());
        let ops = |metrics: Option<&metrics_exporter_prometheus::PrometheusHandle>| {
            Some(Arc::new(crate::http::ops::Ops {
                systems: systems.clone(),
                pollers: app
                    .pollers
                    .configured(app.config.telegram.as_ref(), app.config.max.as_ref()),
                metrics: metrics.cloned(),
            }))
        };
        if let (Some(listen), Some(handle)) = (http.metrics_listen, &metrics) {
            let mut alone = state.clone();
            alone.ops = ops(Some(handle));
            metrics_task = Some(tokio::spawn(crate::http::ops::serve_metrics(
                listen,
                alone,
                stopped(stop_rx.clone()),
            )));
        }
        state.ops = ops(metrics.as_ref().filter(|_| http.metrics));
        if http.console {
            state.console = Some(console_state(&app, &systems, http)?);
        }
        let limits = http
            .limits()
            .fitted_to(crate::http::server::raise_descriptor_limit());
        Ok(tokio::spawn(crate::http::serve(
            http.listen,
            state,
            limits,
            stopped(stop_rx.clone()),
        )))
    });
    let http_task = http_task.transpose()?;
    // Several instances may share the store: each periodic loop runs on the one holding its
    // lease, and moves to another when that one stops or dies.
    let instance = crate::store::new_id();
    let lease = |name: &'static str, every: std::time::Duration| {
        LoopLease::new(
            app.store.clone(),
            &app.config.business.id,
            name,
            &instance,
            every,
        )
    };
    let watch_task = app.dikidi.clone().map(|dikidi| {
        crate::lifecycle::watch::spawn(
            dikidi,
            app.store.clone(),
            app.clock.clone(),
            app.config.business.id.clone(),
            app.change_applier(),
            app.alerts(),
            stop_rx.clone(),
        )
    });
    let crm_reconcile_task = app.crm_reconciler().map(|reconciler| {
        let interval = app
            .config
            .crm
            .as_ref()
            .map(|c| c.reconcile_interval)
            .unwrap_or(std::time::Duration::from_secs(300));
        tokio::spawn(reconciler.run(
            app.store.clone(),
            app.clock.clone(),
            interval,
            lease("crm_reconcile", interval),
            stop_rx.clone(),
        ))
    });
    let stock_task = app.stock_watch().map(|(watch, every)| {
        tokio::spawn(watch.run(
            app.clock.clone(),
            every,
            lease("onec_stock", every),
            stop_rx.clone(),
        ))
    });
    // Dikidi's poller above already re-reads its bookings.
    let reconcile_task = app.dikidi.is_none().then(|| {
        let every = app.config.sync.reconcile_interval;
        crate::lifecycle::watch::spawn_reconciler(
            app.reconciler(),
            app.clock.clone(),
            every,
            lease("schedule_reconcile", every),
            stop_rx.clone(),
        )
    });
    let reminders_task = app.config.reminders.enabled.then(|| {
        let every = app.config.reminders.check_every;
        crate::lifecycle::reminders::spawn(
            app.reminders(),
            app.clock.clone(),
            every,
            lease("reminders", every),
            stop_rx.clone(),
        )
    });
    // Only where a CRM takes the leads and the conversation records the attempts.
    let unfinished_task = match (&app.crm, app.conversations.follows_unfinished()) {
        (Some(crm), Some(after)) => Some(crate::unfinished::spawn(
            app.store.clone(),
            app.config.business.id.clone(),
            crm.system(),
            after,
            app.clock.clone(),
            lease("unfinished", crate::unfinished::check_every(after)),
            stop_rx.clone(),
        )),
        _ => None,
    };
    let retention_task = crate::store::retention::spawn(
        app.store.clone(),
        app.config.business.id.clone(),
        app.config.retention.clone(),
        app.clock.clone(),
        lease("retention", crate::store::retention::ERASURES_EVERY),
        stop_rx.clone(),
    );
    let bots = app.run_messengers().await;
    let _ = stop_tx.send(true);
    for task in [http_task, metrics_task].into_iter().flatten() {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    for task in [
        watch_task,
        reconcile_task,
        reminders_task,
        crm_reconcile_task,
        unfinished_task,
        stock_task,
        Some(retention_task),
    ]
    .into_iter()
    .flatten()
    {
        let _ = task.await;
    }
    match engine_task.await {
        Ok(Err(e)) => tracing::error!(error = %e, "delivery engine failed"),
        Err(e) => tracing::error!(error = %e, "delivery engine task failed"),
        Ok(Ok(())) => {}
    }
    bots.context("running the messenger bots")?;
    app.store.close().await;
    Ok(())
}

/// The schedule's zone is the one every time a client sees is in: a YClients company's
/// `timezone_name` wins over a `business.timezone` that disagrees (a Yekaterinburg salon set
/// up as Moscow would show every time two hours early), with a warning naming both.
/// The console's view of this deployment's business.
fn console_state(
    app: &App,
    systems: &[String],
    http: &crate::config::HttpConfig,
) -> anyhow::Result<Arc<crate::console::ConsoleState>> {
    let config = &app.config;
    let business = crate::console::BusinessView {
        id: config.business.id.clone(),
        name: config.business.name.clone(),
        timezone: config.business.timezone,
        telegram_bot: config
            .telegram
            .as_ref()
            .and_then(|t| t.bot_username.clone()),
        max_bot: config.max.as_ref().and_then(|m| m.bot_username.clone()),
        schedule: app.booking.system(),
        crm: app.crm.as_ref().map(|c| c.system()),
        systems: systems.to_vec(),
        webhook_sources: app.webhook_sources(),
        webhook_secret: http.webhook_secret.clone(),
        booking: app.booking.clone(),
        crm_client: app.crm.clone(),
    };
    let state = crate::console::ConsoleState::new(
        app.store.clone(),
        app.clock.clone(),
        vec![business],
        http.public_url.as_ref().map(|u| u.to_string()),
    )
    .context("preparing the console")?;
    Ok(Arc::new(state))
}

async fn adopt_schedule_timezone(config: &mut Config) {
    let (crate::config::BookingSystemKind::Yclients, Some(yc)) =
        (&config.booking.system, &config.booking.yclients)
    else {
        return;
    };
    let client = crate::booking::yclients::Yclients::new(yc, Arc::new(SystemClock));
    let read = client.company().await;
    // This client's limiter is not the one the service's client starts with: let YClients'
    // one-second window pass before that client may send its first burst.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    match read {
        Ok(company) if company.timezone != config.business.timezone => {
            tracing::warn!(
                "business.timezone {} disagrees with the YClients company's timezone_name {}; \
                 clients are shown times in {} (fix business.timezone)",
                config.business.timezone,
                company.timezone,
                company.timezone
            );
            config.business.timezone = company.timezone;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read the YClients company's time zone at start; using business.timezone {}",
            config.business.timezone
        ),
    }
}

async fn check(path: &std::path::Path, probe: bool) -> anyhow::Result<()> {
    let config = load(path)?;
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
        let business = config.business.id.as_str();
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

async fn amocrm(cmd: AmoCmd) -> anyhow::Result<()> {
    let (path, code, url) = match &cmd {
        AmoCmd::Auth { config, code } => (&config.config, Some(code.clone()), None),
        AmoCmd::Webhook { config, url } => (&config.config, None, Some(url.clone())),
        AmoCmd::Setup(config) => (&config.config, None, None),
    };
    let config = load(path)?;
    let Some(amo) = config.crm.as_ref().and_then(|c| c.amocrm.clone()) else {
        bail!("no [crm.amocrm] section in {}", path.display());
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

async fn onec(cmd: OnecCmd) -> anyhow::Result<()> {
    let path = match &cmd {
        OnecCmd::Check(c) => &c.config,
        OnecCmd::Stock { config, .. } => &config.config,
    };
    let config = load(path)?;
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
                &app.config.business.id,
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

async fn link(cmd: LinkCmd) -> anyhow::Result<()> {
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
            let config = load(&config.config)?;
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
            let config = load(&config.config)?;
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
