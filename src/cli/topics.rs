use anyhow::Result;
use clap::Subcommand;

use super::{KafkaArgs, TopicArgs};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics that do not exist yet.
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
        /// Print what would be created, change nothing.
        #[arg(long)]
        dry_run: bool,
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
            dry_run,
            kafka,
            topics,
        } => {
            let dlq = topics.topic_dlq.clone();
            let topics = topics.topics();
            let mut names = topics.synced();
            names.extend(topics.other.clone());
            names.push(dlq);
            if dry_run {
                for name in &names {
                    println!(
                        "would create {name} (partitions {partitions}, replication {replication})"
                    );
                }
                return Ok(());
            }
            crate::topics::ensure_topics_with(
                &kafka.brokers,
                &kafka.options(),
                &names,
                partitions,
                replication,
                retention_ms,
            )
            .await?;
            for name in &names {
                println!("{name}: present");
            }
            Ok(())
        }
    }
}
