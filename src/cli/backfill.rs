use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use clerk_sync_core::Secret;

use super::{KafkaArgs, TopicArgs};
use crate::backfill::{backfill, BackfillConfig, RESOURCES};

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
    /// List and count only; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
}

pub async fn run(args: BackfillArgs) -> Result<()> {
    let Some(secret_key) = args.secret_key.clone() else {
        bail!("CLERK_SECRET_KEY is not set: expected the instance's secret key (sk_…) from the Clerk dashboard");
    };
    crate::backfill::check_api_url(&args.api_url)?;
    if !(1..=500).contains(&args.page_size) {
        bail!("--page-size: expected 1..500, got {}", args.page_size);
    }
    let producer = crate::dlq::producer(&args.kafka.brokers, &args.kafka.options())?;
    let config = BackfillConfig {
        api_url: args.api_url.clone(),
        secret_key,
        page_size: args.page_size,
        rate: args.rate,
        topics: args.topics.topics(),
        dry_run: args.dry_run,
        state_file: args.state_file.clone(),
        resume: args.resume,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let summary = backfill(config, &producer, |s| {
        let line = format!(
            "listed {} organizations, {} users, {} memberships; published {}",
            s.listed[0], s.listed[1], s.listed[2], s.published
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("backfill: {line}"),
        }
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let counts: Vec<String> = RESOURCES
        .iter()
        .zip(summary.listed)
        .map(|((name, _), n)| format!("{n} {name}"))
        .collect();
    println!(
        "{}listed {}; published {} events ({} requests, {} rate-limited)",
        if args.dry_run { "dry run: " } else { "" },
        counts.join(", "),
        summary.published,
        summary.requests,
        summary.rate_limited
    );
    Ok(())
}
