//! Command-line pieces of the sync engine, for the main CLI to mount:
//! `zapis queue`, `zapis queue retry ID|--dead [--system S]`,
//! `zapis journal [--system S] [--failed] [--since 2h] [--job ID]` and `zapis worker`.

use crate::domain::{BusinessId, System};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::{Clock, SystemClock};
use crate::store::{Store, StoreError};
use crate::sync::alerts::{AlertSink, Alerts, WebhookSink};
use crate::sync::config::{SyncConfig, parse_duration};
use crate::sync::http_target::HttpTarget;
use crate::sync::jobs::{JobState, Queue};
use crate::sync::journal::{JournalFilter, read_journal};
use crate::sync::retry::RetryPolicy;
use crate::sync::worker::Engine;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker stopped: {0}")]
    Engine(#[from] crate::sync::worker::EngineError),
}

#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: Option<QueueCommand>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueCommand {
    /// Revive a dead job (or all dead jobs) so it is delivered again; a pending job waiting
    /// out its backoff runs now.
    Retry {
        /// The job id shown by `zapis journal`.
        id: Option<i64>,
        /// Revive every dead job (of `--system` and `--business`, if given).
        #[arg(long, conflicts_with = "id")]
        dead: bool,
        /// A system by its stored name, as `zapis queue` lists it.
        #[arg(long)]
        system: Option<System>,
        /// Only this business's jobs.
        #[arg(long)]
        business: Option<String>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// A system by its stored name, as `zapis queue` lists it.
    #[arg(long)]
    pub system: Option<System>,
    /// Only attempts that did not deliver.
    #[arg(long)]
    pub failed: bool,
    /// Only attempts newer than this, e.g. `2h`, `30m`, `7d`.
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    #[arg(long)]
    pub job: Option<i64>,
    #[arg(long, default_value_t = 200)]
    pub limit: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Deliver jobs of `--system` by POSTing their payload to this URL (the generic `http`
    /// connector). Without it, the workers deliver for every system the configuration names
    /// (CRM, schedule, messengers) with its `[sync]` settings, beside or instead of `zapis run`.
    #[arg(long)]
    pub http_target: Option<url::Url>,
    /// With `--http-target`: the system whose jobs go there, one zapis knows (jobs are only
    /// ever queued under those), `http` unless another is named.
    #[arg(long, default_value = "http")]
    pub system: System,
    /// With `--http-target`: the business whose jobs these workers deliver (jobs of other
    /// businesses sharing the store are never claimed).
    #[arg(long, default_value = "default")]
    pub business: BusinessId,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub alert_after: Duration,
    #[arg(long)]
    pub alert_webhook: Option<url::Url>,
    /// How long running jobs may finish after SIGTERM before they are released.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Test hook: comma-separated first retry waits, e.g. `20ms,50ms`.
    #[arg(long, hide = true)]
    pub retry_steps: Option<String>,
    /// Test hook: the steady retry range, e.g. `100ms-300ms`.
    #[arg(long, hide = true)]
    pub retry_steady: Option<String>,
}

/// `zapis queue [retry …]`.
pub async fn queue_command(
    store: &Store,
    args: &QueueArgs,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let queue = Queue::new(store.clone());
    match &args.command {
        None => {
            let rows = queue.stats().await?;
            writeln!(out, "{:<16} {:<8} {:>8}  oldest", "system", "state", "jobs")?;
            for r in rows {
                let oldest = match (r.state, r.oldest_created_at) {
                    (JobState::Pending | JobState::Running, Some(t)) => human_age(now - t),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{:<16} {:<8} {:>8}  {oldest}",
                    r.system,
                    r.state.as_str(),
                    r.count
                )?;
            }
            let health =
                crate::sync::health::system_health(store, Duration::from_secs(3600), now).await?;
            if !health.is_empty() {
                writeln!(out, "\nlast hour:")?;
            }
            for h in health {
                let since = h
                    .failing_since
                    .map(|t| format!(" (failing for {})", human_age(now - t)));
                writeln!(
                    out,
                    "{:<16} {:<16} {:?}{}",
                    h.business_id,
                    h.system,
                    h.health,
                    since.unwrap_or_default()
                )?;
            }
        }
        Some(QueueCommand::Retry {
            id: Some(id),
            business,
            ..
        }) => match queue.revive(*id, business.as_deref(), now).await? {
            Some(JobState::Pending) => writeln!(out, "job {id} runs now")?,
            Some(_) => writeln!(out, "job {id} is pending again")?,
            None => {
                return Err(CliError::Usage(format!(
                    "job {id} does not exist{} or is neither dead nor pending",
                    business
                        .as_deref()
                        .map(|b| format!(" for business {b}"))
                        .unwrap_or_default()
                )));
            }
        },
        Some(QueueCommand::Retry {
            id: None,
            dead: true,
            system,
            business,
        }) => {
            let n = queue.revive_dead(*system, business.as_deref(), now).await?;
            writeln!(out, "{n} dead job(s) are pending again")?;
        }
        Some(QueueCommand::Retry { .. }) => {
            return Err(CliError::Usage("give a job id or --dead".into()));
        }
    }
    Ok(())
}

/// `zapis journal`.
pub async fn journal_command(
    store: &Store,
    args: &JournalArgs,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let filter = JournalFilter {
        business_id: None,
        system: args.system,
        failed_only: args.failed,
        since: args
            .since
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now - d),
        job_id: args.job,
        limit: Some(args.limit),
    };
    for e in read_journal(store, &filter).await? {
        writeln!(
            out,
            "{} {} {} {} job={} try={} {} {} {}ms {}",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.business_id,
            e.system,
            e.operation,
            e.job_id,
            e.attempt,
            e.outcome,
            e.http_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            e.duration_ms,
            e.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `zapis worker`: runs the engine with the `http` connector until SIGINT/SIGTERM.
pub async fn worker_command(store: Store, args: &WorkerArgs) -> Result<(), CliError> {
    let config = SyncConfig {
        workers: args.workers,
        batch: args.batch,
        lease: args.lease,
        poll: args.poll,
        alert_after: args.alert_after,
        request_timeout: args.request_timeout,
        ..SyncConfig::default()
    };
    let Some(target) = &args.http_target else {
        return Err(CliError::Usage(
            "the generic worker needs --http-target".into(),
        ));
    };
    let policy = retry_overrides(config.retry_policy(), args)?;
    let client = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
        .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
    let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
    if let Some(url) = &args.alert_webhook {
        sinks.push(Arc::new(WebhookSink::new(client.clone(), url.clone())));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut engine = Engine::new(store, clock, config, Alerts::new(sinks), &args.business)
        .with_policy(policy)
        .with_shutdown_grace(args.shutdown_grace);
    engine.register(
        args.system,
        Arc::new(HttpTarget::new(client, target.clone(), None)),
    );
    run_until_signal(engine).await
}

/// Runs an engine until SIGTERM/SIGINT, then lets running jobs finish or releases them.
pub async fn run_until_signal(engine: Engine) -> Result<(), CliError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing running jobs");
        let _ = stop.send(true);
    });
    Arc::new(engine).run(stopped).await?;
    Ok(())
}

/// The hidden `--retry-steps` / `--retry-steady` test hooks applied to a policy.
pub fn retry_overrides(
    mut policy: RetryPolicy,
    args: &WorkerArgs,
) -> Result<RetryPolicy, CliError> {
    if let Some(steps) = &args.retry_steps {
        policy.steps = steps
            .split(',')
            .map(parse_duration)
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    if let Some(steady) = &args.retry_steady {
        let (lo, hi) = steady
            .split_once('-')
            .ok_or_else(|| CliError::Usage("--retry-steady LO-HI".into()))?;
        policy = RetryPolicy {
            steady_min: parse_duration(lo).map_err(|e| CliError::Usage(e.to_string()))?,
            steady_max: parse_duration(hi).map_err(|e| CliError::Usage(e.to_string()))?,
            ..policy
        };
    }
    Ok(policy)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Worker {
        #[command(flatten)]
        args: WorkerArgs,
    }

    #[derive(Debug, Parser)]
    struct Journal {
        #[command(flatten)]
        args: JournalArgs,
    }

    /// Jobs are only ever queued under the systems zapis knows, so a name that is none of
    /// them is refused where it is typed rather than matching nothing.
    #[test]
    fn system_arguments_name_a_system_zapis_knows() {
        let worker = Worker::try_parse_from(["worker"]).expect("defaults");
        assert_eq!(worker.args.system, System::Http);
        let worker = Worker::try_parse_from(["worker", "--system", "amocrm"]).expect("amocrm");
        assert_eq!(worker.args.system, System::AmoCrm);
        let err = Worker::try_parse_from(["worker", "--system", "flaky"]).expect_err("flaky");
        assert!(err.to_string().contains("`flaky` is not a system"), "{err}");

        let journal = Journal::try_parse_from(["journal", "--system", "import.amocrm"])
            .expect("an import's system");
        assert_eq!(journal.args.system, Some(System::ImportAmoCrm));
        assert!(Journal::try_parse_from(["journal", "--system", "AmoCRM"]).is_err());
    }
}
