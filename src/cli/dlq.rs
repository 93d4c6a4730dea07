use anyhow::{Context, Result};
use clap::Subcommand;
use clerk_sync_worker::dead_letter::header;

use super::{Found, KafkaArgs};
use clerk_sync_worker::dead_letter::tools as dlq;

/// The redrive group: it remembers how far redrives went, so none is applied twice, and what
/// is past its position is "waiting".
#[derive(Debug, clap::Args)]
pub struct RedriveGroup {
    /// Consumer group that remembers how far redrives went.
    #[arg(
        long,
        env = "DLQ_REDRIVE_GROUP",
        default_value = "clerk-sync-dlq-redrive"
    )]
    pub group: String,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead letters, by error kind and original topic, and how many wait for a
    /// redrive.
    List {
        #[command(flatten)]
        args: DlqArgs,
        #[command(flatten)]
        redrive: RedriveGroup,
        /// Exit 3 when any dead letter waits for a redrive (CI gates, CronJobs).
        #[arg(long)]
        fail_if_any: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Re-publish dead letters to their original topics (after fixing the cause).
    Redrive {
        #[command(flatten)]
        args: DlqArgs,
        #[command(flatten)]
        redrive: RedriveGroup,
        /// Redrive only this dead letter (PARTITION:OFFSET); the group's position is not moved.
        #[arg(long)]
        only: Option<String>,
        /// Print what would be re-published, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Sign dead letters that carry no signature, or whose signature failed (kind
        /// `unsigned`), with RECORD_SIGNING_KEY: you vouch that you checked them. Without it
        /// they are refused.
        #[arg(long)]
        vouch: bool,
        /// The key --vouch signs with (base64, at least 32 bytes; the first of several).
        #[arg(long, env = "RECORD_SIGNING_KEY", hide_env_values = true)]
        record_signing_key: Option<clerk_sync_core::Secret>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    /// The dead-letter topic and the synced topics (the only ones a redrive writes to).
    #[command(flatten)]
    pub topics: super::TopicArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// What a client that cannot be made says (the settings it was made from).
const CLIENT: &str = "KAFKA_BROKERS / KAFKA_OPTIONS: cannot create a Kafka client";

fn inspect_group() -> String {
    format!("clerk-sync-dlq-inspect-{}", std::process::id())
}

/// Every dead letter, read without committing anything.
async fn read_all(args: &DlqArgs) -> Result<Vec<clerk_sync_worker::dead_letter::DeadLetter>> {
    args.kafka.check_admitted().await?;
    let consumer = dlq::consumer(&args.kafka.brokers, &args.kafka.options(), &inspect_group())
        .context(CLIENT)?;
    let topic = args.topics.topic_dlq.clone();
    Ok(tokio::task::spawn_blocking(move || dlq::read_to_end(&consumer, &topic, false)).await??)
}

pub async fn run(command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List {
            args,
            redrive,
            fail_if_any,
            json,
        } => list(args, redrive, fail_if_any, json).await,
        DlqCommand::Show {
            args,
            limit,
            show_personal_data,
            json,
        } => show(args, limit, show_personal_data, json).await,
        DlqCommand::Redrive {
            args,
            redrive,
            only,
            dry_run,
            vouch,
            record_signing_key,
            json,
        } => {
            let vouch = vouch
                .then(|| super::args::record_signer(record_signing_key.as_ref()))
                .transpose()?;
            redrive_letters(args, redrive.group, only, dry_run, vouch, json).await
        }
    }
}

async fn list(args: DlqArgs, redrive: RedriveGroup, fail_if_any: bool, json: bool) -> Result<()> {
    let letters = read_all(&args).await?;
    let consumer = dlq::consumer(&args.kafka.brokers, &args.kafka.options(), &redrive.group)
        .context(CLIENT)?;
    let topic = args.topics.topic_dlq.clone();
    let redriven = tokio::task::spawn_blocking(move || dlq::committed(&consumer, &topic)).await??;
    let summary = dlq::DlqSummary::new(&args.topics.topic_dlq, &letters, &redriven);
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: {} dead letters ({} waiting for a redrive)",
            summary.topic, summary.total, summary.waiting
        );
        for k in &summary.by_kind {
            println!(
                "  {:>6}  {:<24} from {} ({} waiting)",
                k.total, k.error_kind, k.original_topic, k.waiting
            );
        }
    }
    if fail_if_any && summary.waiting > 0 {
        return Err(Found(format!(
            "{} dead letters wait for a redrive on {}",
            summary.waiting, summary.topic
        ))
        .into());
    }
    Ok(())
}

async fn show(args: DlqArgs, limit: usize, show_personal_data: bool, json: bool) -> Result<()> {
    let letters = read_all(&args).await?;
    if json {
        let shown: Vec<_> = letters
            .iter()
            .take(limit)
            .map(|l| dlq::letter_json(&args.topics.topic_dlq, l, show_personal_data))
            .collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    for l in letters.iter().take(limit) {
        let h = |name| l.header(name).unwrap_or_default();
        println!(
            "{}:{}:{}  kind={}  from={}:{}:{}  attempts={}  first_failure_ms={}  last_failure_ms={}  worker={}",
            args.topics.topic_dlq, l.partition, l.offset, h(header::ERROR_KIND), h(header::ORIGINAL_TOPIC),
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

async fn redrive_letters(
    args: DlqArgs,
    group: String,
    only: Option<String>,
    dry_run: bool,
    vouch: Option<clerk_sync_kafka::provenance::RecordSigner>,
    json: bool,
) -> Result<()> {
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
    let redrive = dlq::Redrive {
        brokers: args.kafka.brokers.clone(),
        options: args.kafka.options(),
        topic: args.topics.topic_dlq.clone(),
        group,
        only,
        dry_run,
        to: dlq::Destination {
            allowed_topics: args.topics.topics().synced(),
            vouch,
        },
    };
    let done = dlq::redrive(&redrive, |r| {
        if json {
            return;
        }
        match &r.refused {
            None => println!(
                "{} {}:{}:{} to {}",
                if dry_run { "would redrive" } else { "redriven" },
                args.topics.topic_dlq,
                r.partition,
                r.offset,
                r.original_topic
            ),
            Some(refusal) => println!(
                "refused {}:{}:{} (to {:?}): {}",
                args.topics.topic_dlq,
                r.partition,
                r.offset,
                r.original_topic,
                refusal.as_str()
            ),
        }
    })
    .await?;
    let refused = done.iter().filter(|r| r.refused.is_some()).count();
    if json {
        let out = serde_json::json!({"topic": args.topics.topic_dlq, "dry_run": dry_run,
            "count": done.len() - refused, "refused": refused, "dead_letters": done});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verb = if dry_run {
            "would be redriven"
        } else {
            "redriven"
        };
        println!(
            "{} dead letters {verb}, {refused} refused",
            done.len() - refused
        );
    }
    Ok(())
}
