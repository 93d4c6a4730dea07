use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Subcommand;
use clerk_sync_worker::dead_letter::header;

use super::KafkaArgs;
use crate::dlq;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead letters, by error kind and original topic.
    List(DlqArgs),
    /// Print dead letters with their context; personal data redacted unless asked.
    Show {
        #[command(flatten)]
        args: DlqArgs,
        /// At most this many records.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print bodies as they are, personal data included.
        #[arg(long)]
        show_personal_data: bool,
    },
    /// Re-publish dead letters to their original topics (after fixing the cause).
    Redrive {
        #[command(flatten)]
        args: DlqArgs,
        /// Consumer group that remembers how far redrives went, so none is applied twice.
        #[arg(
            long,
            env = "DLQ_REDRIVE_GROUP",
            default_value = "clerk-sync-dlq-redrive"
        )]
        group: String,
        /// Redrive only this dead letter (PARTITION:OFFSET); the group's position is not moved.
        #[arg(long)]
        only: Option<String>,
        /// Print what would be re-published, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    /// Dead-letter topic.
    #[arg(long, env = "TOPIC_DLQ", default_value = "clerk.dlq")]
    pub topic_dlq: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn inspect_group() -> String {
    format!("clerk-sync-dlq-inspect-{}", std::process::id())
}

/// Every dead letter, read without committing anything.
async fn read_all(args: &DlqArgs) -> Result<Vec<clerk_sync_worker::dead_letter::DeadLetter>> {
    let consumer = dlq::consumer(&args.kafka.brokers, &args.kafka.options(), &inspect_group())?;
    let topic = args.topic_dlq.clone();
    tokio::task::spawn_blocking(move || dlq::read_to_end(&consumer, &topic, false)).await?
}

pub async fn run(command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List(args) => {
            let letters = read_all(&args).await?;
            let mut by_kind: BTreeMap<(String, String), usize> = BTreeMap::new();
            for l in &letters {
                let kind = l
                    .header(header::ERROR_KIND)
                    .unwrap_or_else(|| "unknown".into());
                let topic = l
                    .header(header::ORIGINAL_TOPIC)
                    .unwrap_or_else(|| "unknown".into());
                *by_kind.entry((kind, topic)).or_default() += 1;
            }
            println!("{}: {} dead letters", args.topic_dlq, letters.len());
            for ((kind, topic), n) in by_kind {
                println!("  {n:>6}  {kind:<24} from {topic}");
            }
            Ok(())
        }
        DlqCommand::Show {
            args,
            limit,
            show_personal_data,
        } => {
            let letters = read_all(&args).await?;
            for l in letters.iter().take(limit) {
                let h = |name| l.header(name).unwrap_or_default();
                println!(
                    "{}:{}:{}  kind={}  from={}:{}:{}  attempts={}  first_failure_ms={}  last_failure_ms={}  worker={}",
                    args.topic_dlq, l.partition, l.offset, h(header::ERROR_KIND), h(header::ORIGINAL_TOPIC),
                    h(header::ORIGINAL_PARTITION), h(header::ORIGINAL_OFFSET), h(header::ATTEMPTS),
                    h(header::FIRST_FAILURE_MS), h(header::LAST_FAILURE_MS), h(header::WORKER_ID)
                );
                println!("  error: {}", h(header::ERROR_MESSAGE));
                println!(
                    "  svix-id: {}  type: {}",
                    h(clerk_sync_core::record_header::EVENT_ID),
                    h(clerk_sync_core::record_header::EVENT_TYPE)
                );
                let body = if show_personal_data {
                    l.value
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                } else {
                    dlq::redacted_body(l.value.as_deref())
                };
                println!("  body: {body}");
            }
            Ok(())
        }
        DlqCommand::Redrive {
            args,
            group,
            only,
            dry_run,
        } => {
            let only = only
                .map(|o| -> Result<(i32, i64)> {
                    let (p, off) = o
                        .split_once(':')
                        .context("--only: expected PARTITION:OFFSET")?;
                    Ok((
                        p.parse().context("--only: partition")?,
                        off.parse().context("--only: offset")?,
                    ))
                })
                .transpose()?;
            let consumer = dlq::consumer(&args.kafka.brokers, &args.kafka.options(), &group)?;
            let topic = args.topic_dlq.clone();
            let from_committed = only.is_none();
            let (consumer, letters) = tokio::task::spawn_blocking(move || {
                let letters = dlq::read_to_end(&consumer, &topic, from_committed);
                letters.map(|l| (consumer, l))
            })
            .await??;
            let selected: Vec<_> = letters
                .iter()
                .filter(|l| only.is_none_or(|(p, o)| l.partition == p && l.offset == o))
                .collect();
            let producer = dlq::producer(&args.kafka.brokers, &args.kafka.options())?;
            for letter in &selected {
                let target = letter.header(header::ORIGINAL_TOPIC).unwrap_or_default();
                if dry_run {
                    println!(
                        "would redrive {}:{}:{} to {target}",
                        args.topic_dlq, letter.partition, letter.offset
                    );
                    continue;
                }
                dlq::republish(&producer, &args.topic_dlq, letter).await?;
                if only.is_none() {
                    dlq::commit_past(&consumer, &args.topic_dlq, letter)?;
                }
                println!(
                    "redriven {}:{}:{} to {target}",
                    args.topic_dlq, letter.partition, letter.offset
                );
            }
            println!(
                "{} dead letters {}",
                selected.len(),
                if dry_run {
                    "would be redriven"
                } else {
                    "redriven"
                }
            );
            Ok(())
        }
    }
}
