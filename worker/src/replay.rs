//! Replay: re-read the topics from a chosen point up to the log end seen at the start, and apply
//! every record through the worker's own path. Runs under a consumer group of its own and commits
//! nothing, so the live group's offsets never move.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clerk_sync_kafka::Role;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_events_dry_run, Outcome};
use crate::batch::{apply_records, warn_undecodable};
use crate::{decode_record, Error, EventOutcome, Health, Record, Result};

/// Where a replay starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// Records with a timestamp at or after this time (ms since the epoch).
    Time(i64),
    /// Exactly these partitions, from these offsets.
    Offsets(Vec<(String, i32, i64)>),
}

#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub brokers: String,
    pub options: Vec<(String, String)>,
    /// A group of the replay's own (never the live group).
    pub group: String,
    pub topics: Vec<String>,
    pub start: Start,
    /// Records after this time (ms) are skipped.
    pub until_ms: Option<i64>,
    pub batch_max: usize,
    /// Apply in one transaction that is rolled back: report, change nothing.
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    pub read: u64,
    pub applied: u64,
    pub stale: u64,
    pub duplicate: u64,
    pub ignored: u64,
    /// Records that cannot be applied (the live worker dead-letters them; replay only counts).
    pub rejected: u64,
    /// Records outside `--from-time`/`--until-time`.
    pub skipped_by_time: u64,
    pub total: u64,
    #[serde(skip)]
    pub duration: Duration,
}

struct Range {
    end: i64,
    done: bool,
}

/// Where each partition's read ends (the log end seen at the start).
type Ranges = BTreeMap<(String, i32), Range>;

fn consumer(config: &ReplayConfig) -> Result<StreamConsumer> {
    let client = clerk_sync_kafka::config(
        Role::Reader {
            group: &config.group,
        },
        &config.brokers,
        &config.options,
    );
    client.create().map_err(Error::Kafka)
}

/// Start offsets and end offsets (log end now) per partition.
fn plan(consumer: &StreamConsumer, config: &ReplayConfig) -> Result<(TopicPartitionList, Ranges)> {
    let timeout = Duration::from_secs(10);
    let mut ranges = BTreeMap::new();
    let mut starts = TopicPartitionList::new();
    let mut lows = BTreeMap::new();
    for (topic, partition, low, high) in
        crate::watermarks::watermarks(consumer, &config.topics, timeout)?
    {
        lows.insert((topic.clone(), partition), low);
        ranges.insert(
            (topic, partition),
            Range {
                end: high,
                done: false,
            },
        );
    }
    match &config.start {
        Start::Beginning => {
            for ((topic, partition), low) in &lows {
                starts
                    .add_partition_offset(topic, *partition, Offset::Offset(*low))
                    .map_err(Error::Kafka)?;
            }
        }
        Start::Time(ms) => {
            let mut query = TopicPartitionList::new();
            for (topic, partition) in lows.keys() {
                query
                    .add_partition_offset(topic, *partition, Offset::Offset(*ms))
                    .map_err(Error::Kafka)?;
            }
            // The lookup narrows the read; records older than the start are also skipped one by
            // one, so a broker that answers it wrongly costs time, never correctness.
            let found = consumer
                .offsets_for_times(query, timeout)
                .map_err(Error::Kafka)?;
            for e in found.elements() {
                let low = lows
                    .get(&(e.topic().to_owned(), e.partition()))
                    .copied()
                    .unwrap_or(0);
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= low => o,
                    Offset::End => ranges
                        .get(&(e.topic().to_owned(), e.partition()))
                        .map_or(low, |r| r.end),
                    _ => low,
                };
                starts
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))
                    .map_err(Error::Kafka)?;
            }
        }
        Start::Offsets(explicit) => {
            ranges.retain(|key, _| explicit.iter().any(|(t, p, _)| (t, p) == (&key.0, &key.1)));
            for (topic, partition, offset) in explicit {
                starts
                    .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(Error::Kafka)?;
            }
        }
    }
    for e in starts.elements() {
        if let (Some(range), Offset::Offset(start)) = (
            ranges.get_mut(&(e.topic().to_owned(), e.partition())),
            e.offset(),
        ) {
            range.done = start >= range.end;
        }
    }
    Ok((starts, ranges))
}

/// How long the broker may have nothing before a partial batch is written.
const IDLE_GAP: Duration = Duration::from_millis(200);

/// Replays and returns the summary; `progress(read, total)` is called after every batch.
pub async fn replay(
    config: &ReplayConfig,
    pool: &PgPool,
    health: &Health,
    cancel: &CancellationToken,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplaySummary> {
    let started = Instant::now();
    let consumer = consumer(config)?;
    let (starts, mut ranges) = plan(&consumer, config)?;
    let mut summary = ReplaySummary::default();
    for e in starts.elements() {
        if let (Some(r), Offset::Offset(s)) = (
            ranges.get(&(e.topic().to_owned(), e.partition())),
            e.offset(),
        ) {
            summary.total += (r.end - s).max(0) as u64;
        }
    }
    consumer.assign(&starts).map_err(Error::Kafka)?;
    let start_ms = match config.start {
        Start::Time(ms) => Some(ms),
        _ => None,
    };
    let mut dry_tx = if config.dry_run {
        Some(pool.begin().await?)
    } else {
        None
    };

    while ranges.values().any(|r| !r.done) {
        // Decoded as they arrive: a batch holds no raw copy of its records.
        let mut records: Vec<Record> = Vec::new();
        while records.len() < config.batch_max {
            // A replay reads a backlog: a batch fills up to --batch-max and is written early
            // only when the broker has had nothing for a moment (a slow tail, a filtered range).
            let message = tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(IDLE_GAP), if !records.is_empty() => break,
                m = consumer.recv() => m.map_err(Error::Kafka)?.detach(),
            };
            let key = (message.topic().to_owned(), message.partition());
            let Some(range) = ranges.get_mut(&key) else {
                continue;
            };
            if message.offset() >= range.end {
                range.done = true;
                continue;
            }
            if message.offset() + 1 >= range.end {
                range.done = true;
            }
            summary.read += 1;
            let at = message.timestamp().to_millis().unwrap_or(0);
            if start_ms.is_some_and(|s| at < s) || config.until_ms.is_some_and(|u| at > u) {
                summary.skipped_by_time += 1;
                continue;
            }
            records.push(decode_record(&message));
            if ranges.values().all(|r| r.done) {
                break;
            }
        }
        match dry_tx.as_mut() {
            Some(tx) => {
                // The batch as the worker writes it, inside the one transaction rolled back.
                let mut events = Vec::with_capacity(records.len());
                for record in &records {
                    match &record.decoded {
                        Ok(event) => events.push(event),
                        Err(e) => {
                            warn_undecodable(record, e);
                            summary.rejected += 1;
                        }
                    }
                }
                for outcome in apply_events_dry_run(tx, &events).await? {
                    count(&mut summary, outcome);
                }
            }
            None => {
                let (report, poison) = apply_records(pool, &records, health, cancel).await?;
                summary.rejected += poison.len() as u64;
                for ((_, outcome), n) in report.by_topic {
                    match outcome {
                        EventOutcome::Applied => summary.applied += n,
                        EventOutcome::Stale => summary.stale += n,
                        EventOutcome::Duplicate => summary.duplicate += n,
                        EventOutcome::Ignored => summary.ignored += n,
                        EventOutcome::DeadLettered => {}
                    }
                }
            }
        }
        progress(summary.read, summary.total);
    }
    if let Some(tx) = dry_tx {
        tx.rollback().await?;
    }
    summary.duration = started.elapsed();
    Ok(summary)
}

fn count(summary: &mut ReplaySummary, outcome: Outcome) {
    match outcome {
        Outcome::Applied => summary.applied += 1,
        Outcome::Stale => summary.stale += 1,
        Outcome::Duplicate => summary.duplicate += 1,
        Outcome::Ignored => summary.ignored += 1,
    }
}
