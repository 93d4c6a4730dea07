use anyhow::{bail, Result};
use clap::Subcommand;

use super::{KafkaArgs, TopicArgs};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics that do not exist yet, then check every one is as asked.
    Create {
        /// Partitions per topic (the most workers that can share the load).
        #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 6)]
        partitions: i32,
        /// Replication factor (3 on a production cluster).
        #[arg(long, env = "TOPIC_REPLICATION", default_value_t = 1)]
        replication: i32,
        /// Retention of new topics in milliseconds (the broker's default when unset). Keep
        /// enough to replay from: a week or more.
        #[arg(long, env = "TOPIC_RETENTION_MS")]
        retention_ms: Option<i64>,
        /// Retention of the dead-letter topic in milliseconds (30 days): time to find, fix and
        /// redrive a record, whatever the event topics keep.
        #[arg(long, env = "TOPIC_DLQ_RETENTION_MS", default_value_t = clerk_sync_kafka::topics::DEFAULT_DLQ_RETENTION_MS)]
        dlq_retention_ms: i64,
        /// Print what would be created, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON: each topic with its partitions, replication and settings.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
    },
}

pub async fn run(command: TopicsCommand) -> Result<()> {
    match command {
        TopicsCommand::Create {
            partitions,
            replication,
            retention_ms,
            dlq_retention_ms,
            dry_run,
            json,
            kafka,
            topics,
        } => {
            if partitions < 1 || replication < 1 {
                bail!("TOPIC_PARTITIONS / TOPIC_REPLICATION: expected at least 1");
            }
            if dlq_retention_ms < 1 {
                bail!("TOPIC_DLQ_RETENTION_MS: expected a positive number of milliseconds");
            }
            let dlq = topics.topic_dlq.clone();
            let topics = topics.topics();
            let mut names = topics.synced();
            names.extend(topics.other.clone());
            let specs = clerk_sync_kafka::topics::plan(
                &names,
                &dlq,
                partitions,
                replication,
                retention_ms,
                dlq_retention_ms,
            );
            if !dry_run {
                kafka.check_admitted().await?;
                clerk_sync_kafka::topics::create(&kafka.brokers, &kafka.options(), &specs).await?;
            }
            if json {
                let topics: Vec<_> = specs.iter().map(spec_json).collect();
                let out = serde_json::json!({"dry_run": dry_run, "topics": topics});
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            for spec in &specs {
                if dry_run {
                    println!("would create {spec}");
                } else {
                    println!("{spec}: present, as asked");
                }
            }
            Ok(())
        }
    }
}

fn spec_json(spec: &clerk_sync_kafka::topics::TopicSpec) -> serde_json::Value {
    let configs: serde_json::Map<String, serde_json::Value> = spec
        .configs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
        .collect();
    serde_json::json!({"name": spec.name, "partitions": spec.partitions,
        "replication": spec.replication, "configs": configs})
}
