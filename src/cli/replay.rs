use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use clerk_sync_core::Secret;
use clerk_sync_worker::replay::{replay, ReplayConfig, ReplaySummary, Start};
use clerk_sync_worker::{Health, WorkerMetrics};
use tokio_util::sync::CancellationToken;

use super::{DatabaseArgs, KafkaArgs, TopicArgs};

/// `clerk-sync replay`: rebuild or repair the tables from the Kafka log.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("from").required(true).args(["from_beginning", "from_time", "from_offset"]))]
pub struct ReplayArgs {
    /// Replay everything still in the topics.
    #[arg(long)]
    pub from_beginning: bool,
    /// Replay records from this time: RFC 3339 (2026-11-27T08:00:00Z) or an age (24h, 30m).
    #[arg(long, value_parser = parse_time)]
    pub from_time: Option<i64>,
    /// Replay one partition from an offset: TOPIC:PARTITION:OFFSET (repeatable).
    #[arg(long, value_parser = parse_offset)]
    pub from_offset: Vec<(String, i32, i64)>,
    /// Skip records after this time (RFC 3339 or an age).
    #[arg(long, value_parser = parse_time)]
    pub until_time: Option<i64>,
    /// Only these topics (comma-separated); default: the three synced topics.
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Apply into this database instead of DATABASE_URL (migrated first): rebuild into an empty
    /// one. From the environment (or REPLAY_INTO_DATABASE_URL_FILE) to keep its password out of `ps`.
    #[arg(long, env = "REPLAY_INTO_DATABASE_URL", hide_env_values = true)]
    pub into: Option<Secret>,
    /// The live database (unless --into is given).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Report what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Consumer group for the replay's reads (never the live group; nothing is committed).
    #[arg(long)]
    pub group: Option<String>,
    /// Records per batch. Replays are bulk work: larger batches collapse more versions of each
    /// row before writing (see BENCHMARKS.md).
    #[arg(long, default_value_t = 10000)]
    pub batch_max: usize,
    #[command(flatten)]
    pub trust: super::args::TrustArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topic_names: TopicArgs,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339, or a duration meaning "that long ago".
fn parse_time(raw: &str) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(raw) {
        return t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| e.to_string());
    }
    humantime::parse_duration(raw)
        .map(|ago| now_ms() - ago.as_millis() as i64)
        .map_err(|_| {
            format!("expected RFC 3339 (2026-11-27T08:00:00Z) or an age like 24h, got `{raw}`")
        })
}

fn parse_offset(raw: &str) -> Result<(String, i32, i64), String> {
    let mut parts = raw.rsplitn(3, ':');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("expected TOPIC:PARTITION:OFFSET, got `{raw}`"));
    };
    Ok((
        topic.to_owned(),
        partition
            .parse()
            .map_err(|_| format!("bad partition in `{raw}`"))?,
        offset
            .parse()
            .map_err(|_| format!("bad offset in `{raw}`"))?,
    ))
}

pub async fn run(args: ReplayArgs, cancel: CancellationToken) -> Result<()> {
    let url = match (&args.into, &args.database_url) {
        (Some(into), _) => into.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => bail!(
            "DATABASE_URL is not set and --into is not given: expected the database to apply to"
        ),
    };
    let database = DatabaseArgs {
        database_url: url,
        database_max_connections: 4,
        database_lock_timeout_ms: clerk_sync_worker::database::DEFAULT_LOCK_TIMEOUT_MS,
        database_allow_unverified: false,
    };
    let config = config(&args)?;
    args.kafka.check_admitted().await?;
    let pool = database.connect().await?;
    clerk_sync_worker::migrate(&pool)
        .await
        .context("applying migrations")?;
    let health = Health::new(pool.clone());
    let metrics = WorkerMetrics::new(prometheus::Registry::new(), &config.topics)?;
    let mut progress = Progress::new();
    let summary = replay(&config, &pool, &health, &metrics, &cancel, |read, total| {
        progress.show(read, total)
    })
    .await?;
    progress.finish();
    print_summary(&args, &summary)
}

/// The library's configuration from the arguments.
fn config(args: &ReplayArgs) -> Result<ReplayConfig> {
    let topics = if args.topics.is_empty() {
        args.topic_names.topics().synced()
    } else {
        args.topics.clone()
    };
    let start = if args.from_beginning {
        Start::Beginning
    } else if let Some(ms) = args.from_time {
        Start::Time(ms)
    } else {
        Start::Offsets(args.from_offset.clone())
    };
    Ok(ReplayConfig {
        brokers: args.kafka.brokers.clone(),
        options: args.kafka.options(),
        group: args
            .group
            .clone()
            .unwrap_or_else(|| format!("clerk-sync-replay-{}", now_ms())),
        topics,
        start,
        until_ms: args.until_time,
        batch_max: args.batch_max.max(1),
        dry_run: args.dry_run,
        trust: args.trust.trust()?,
    })
}

/// A bar on a terminal; a line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replay [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
        }
    }

    fn show(&mut self, read: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(read);
            }
            None if self.last_line.elapsed() > Duration::from_secs(5) => {
                eprintln!("replay: {read}/{total} records");
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_summary(args: &ReplayArgs, summary: &ReplaySummary) -> Result<()> {
    if args.json {
        let mut out = serde_json::to_value(summary)?;
        out["dry_run"] = args.dry_run.into();
        out["duration_seconds"] = summary.duration.as_secs_f64().into();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}replayed {} records in {:.1}s: {} applied, {} stale, {} duplicate, {} ignored, {} rejected, {} outside the time window",
        if args.dry_run { "dry run (nothing written): " } else { "" },
        summary.read,
        summary.duration.as_secs_f64(),
        summary.applied,
        summary.stale,
        summary.duplicate,
        summary.ignored,
        summary.rejected,
        summary.skipped_by_time,
    );
    Ok(())
}
