use std::time::Duration;

use anyhow::Result;
use clap::Args;
use clerk_sync_worker::lag::measure_lag;

use super::{Found, KafkaArgs, TopicArgs};

/// `clerk-sync lag`: the group's lag per partition, read from the broker.
#[derive(Debug, Args)]
pub struct LagArgs {
    /// Consumer group to report on.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "clerk-sync")]
    pub group: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 3 when any partition lags by more than this many records.
    #[arg(long)]
    pub max_lag: Option<i64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
}

pub async fn run(args: LagArgs) -> Result<()> {
    args.kafka.check_admitted().await?;
    let (brokers, options, group, topics) = (
        args.kafka.brokers.clone(),
        args.kafka.options(),
        args.group.clone(),
        args.topics.topics().synced(),
    );
    let lags = tokio::task::spawn_blocking(move || {
        measure_lag(&brokers, &options, &group, &topics, Duration::from_secs(10))
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lags)?);
    } else {
        println!(
            "{:<32} {:>9} {:>14} {:>16} {:>10} {:>22}",
            "TOPIC",
            "PARTITION",
            "LOG-END-OFFSET",
            "COMMITTED-OFFSET",
            "LAG",
            "OLDEST-UNAPPLIED-AGE"
        );
        for l in &lags {
            let committed = l
                .committed_offset
                .map_or_else(|| "-".to_owned(), |o| o.to_string());
            println!(
                "{:<32} {:>9} {:>14} {:>16} {:>10} {:>21.1}s",
                l.topic,
                l.partition,
                l.log_end_offset,
                committed,
                l.lag,
                l.oldest_unapplied_age_seconds
            );
        }
    }
    if let Some(max) = args.max_lag {
        let worst = lags.iter().map(|l| l.lag).max().unwrap_or(0);
        if worst > max {
            return Err(Found(format!(
                "group {} lags by {worst} records on some partition (--max-lag {max})",
                args.group
            ))
            .into());
        }
    }
    Ok(())
}
