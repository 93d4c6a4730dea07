use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use clerk_sync_core::Secret;

use super::{Found, KafkaArgs, TopicArgs};
use clerk_sync_backfill::report::{self, ProgressLine};
use clerk_sync_backfill::{backfill, BackfillConfig, PruneConfig};

/// `clerk-sync backfill`: bootstrap or repair the tables from Clerk's Backend API.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Clerk instance secret key (sk_…).
    #[arg(long, env = "CLERK_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<Secret>,
    /// Clerk Backend API base URL: https:// (trusting the system's CAs, SSL_CERT_FILE and
    /// SSL_CERT_DIR), or http:// to a loopback address only.
    #[arg(long, env = "CLERK_API_URL", default_value = "https://api.clerk.com")]
    pub api_url: String,
    /// Objects per page (1–500).
    #[arg(long, default_value_t = 100)]
    pub page_size: u32,
    /// Requests per second at most (Clerk allows about 100 per 10 s on development instances).
    #[arg(long, env = "CLERK_API_RATE", default_value_t = 5.0)]
    pub rate: f64,
    /// Continue an interrupted backfill from its state file.
    #[arg(long)]
    pub resume: bool,
    /// Where progress is kept for --resume.
    #[arg(long, default_value = "clerk-sync-backfill.json")]
    pub state_file: PathBuf,
    /// List and count only; publish nothing. With --prune: the drift report, exit 3 when there
    /// is drift.
    #[arg(long)]
    pub dry_run: bool,
    /// Also measure the tables against the listing (DATABASE_URL) and delete what Clerk
    /// deleted: live rows not listed, unchanged since the listing began, confirmed absent.
    #[arg(long, conflicts_with = "resume")]
    pub prune: bool,
    /// Rows --prune deletes per table at most [default: 1% of the table's live rows, at least 1].
    #[arg(long, value_name = "N", requires = "prune")]
    pub max_prune: Option<u64>,
    /// Prune even when a listing looks truncated or more rows than --max-prune would go.
    #[arg(long, requires = "prune")]
    pub force: bool,
    /// The database whose tables --prune measures.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Push the drift figures (clerk_sync_drift_rows) to this Prometheus Pushgateway.
    /// May carry credentials (`https://user:pass@…`): never shown by --help or in errors.
    #[arg(
        long,
        env = "PUSHGATEWAY_URL",
        value_name = "URL",
        requires = "prune",
        hide_env_values = true
    )]
    pub pushgateway_url: Option<String>,
    /// Print the summary (and drift report) as JSON.
    #[arg(long)]
    pub json: bool,
    /// The key that signs what backfill publishes (base64, at least 32 bytes); several
    /// separated by commas during a rotation, the first signs. The worker needs it too.
    #[arg(long, env = "RECORD_SIGNING_KEY", hide_env_values = true)]
    pub record_signing_key: Option<Secret>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
}

pub async fn run(args: BackfillArgs) -> Result<()> {
    let config = config(&args)?;
    args.kafka.check_admitted().await?;
    let producer: rdkafka::producer::FutureProducer = clerk_sync_kafka::config(
        clerk_sync_kafka::Role::Tool,
        &args.kafka.brokers,
        &args.kafka.options(),
    )
    .create()
    .context("KAFKA_BROKERS / KAFKA_OPTIONS: cannot create a Kafka producer")?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut progress = ProgressLine::default();
    let summary = backfill(config, &producer, |s| match &bar {
        Some(bar) => bar.set_message(progress.line(s)),
        None if progress.due(Duration::from_secs(10)) => {
            eprintln!("backfill: {}", progress.line(s));
        }
        None => {}
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::render(&summary));
    }
    if let Some(reason) = &summary.prune_refused {
        bail!("pruning refused: {reason}");
    }
    if let Some(url) = &args.pushgateway_url {
        report::push(url, &summary).await?;
    }
    let drift = summary.drift_rows();
    if args.dry_run && drift > 0 {
        return Err(Found(format!("drift: {drift} rows differ from Clerk")).into());
    }
    Ok(())
}

/// The library's configuration from the arguments, each setting checked.
fn config(args: &BackfillArgs) -> Result<BackfillConfig> {
    let Some(secret_key) = args.secret_key.clone() else {
        bail!("CLERK_SECRET_KEY is not set: expected the instance's secret key (sk_…) from the Clerk dashboard");
    };
    clerk_sync_backfill::check_api_url(&args.api_url)?;
    if !(1..=500).contains(&args.page_size) {
        bail!("--page-size: expected 1..500, got {}", args.page_size);
    }
    let prune = match (args.prune, &args.database_url) {
        (false, _) => None,
        (true, None) => bail!(
            "DATABASE_URL is not set: --prune measures the synced tables against Clerk's listing"
        ),
        (true, Some(url)) => Some(PruneConfig {
            database_url: url.clone(),
            max_prune: args.max_prune,
            force: args.force,
        }),
    };
    if let Some(url) = &args.pushgateway_url {
        reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("PUSHGATEWAY_URL: expected a URL ({e})"))?;
    }
    let signer = if args.dry_run {
        None
    } else {
        Some(super::args::record_signer(
            args.record_signing_key.as_ref(),
        )?)
    };
    Ok(BackfillConfig {
        signer,
        api_url: args.api_url.clone(),
        secret_key,
        page_size: args.page_size,
        rate: args.rate,
        topics: args.topics.topics(),
        dry_run: args.dry_run,
        state_file: args.state_file.clone(),
        resume: args.resume,
        prune,
    })
}
