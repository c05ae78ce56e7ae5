//! Minimal entry point until the main CLI lands: mounts the sync engine's commands.

use clap::{Parser, Subcommand};
use zapis::store::Store;
use zapis::sync::cli::{
    JournalArgs, QueueArgs, WorkerArgs, journal_command, queue_command, worker_command,
};

#[derive(Parser)]
#[command(name = "zapis", version)]
struct Cli {
    /// The store: sqlite://zapis.db or postgres://…
    #[arg(
        long,
        env = "ZAPIS_STORE_URL",
        default_value = "sqlite://zapis.db",
        global = true
    )]
    store: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue counts per state and system; `queue retry` revives dead jobs.
    Queue(QueueArgs),
    /// The audit journal of delivery attempts.
    Journal(JournalArgs),
    /// Run sync workers with the generic `http` connector.
    Worker(WorkerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let store = Store::connect(&cli.store).await?;
    let now = chrono::Utc::now();
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Queue(args) => queue_command(&store, &args, now, &mut out).await?,
        Command::Journal(args) => journal_command(&store, &args, now, &mut out).await?,
        Command::Worker(args) => {
            drop(out);
            worker_command(store, &args).await?
        }
    }
    Ok(())
}
