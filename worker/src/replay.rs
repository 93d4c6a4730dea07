//! Replay: re-read the topics from a chosen point up to the log end seen at the start, and apply
//! every record through the worker's own path. Runs under a consumer group of its own and commits
//! nothing, so the live group's offsets never move.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clerk_sync_kafka::Role;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_events, Intent};
use crate::batch::{apply_records, warn_undecodable};
use crate::{decode_record, Error, EventOutcome, Health, Record, Result, Trust, WorkerMetrics};

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
    pub options: clerk_sync_kafka::options::KafkaOptions,
    /// A group of the replay's own (never the live group).
    pub group: String,
    pub topics: Vec<String>,
    pub start: Start,
    /// Records after this time (ms) are skipped.
    pub until_ms: Option<i64>,
    pub batch_max: usize,
    /// Apply in one transaction that is rolled back: report, change nothing.
    pub dry_run: bool,
    /// What a record must show to be applied, as in the worker.
    pub trust: std::sync::Arc<Trust>,
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
    let starts = match &config.start {
        Start::Beginning => offsets(lows.iter().map(|((t, p), low)| (t.as_str(), *p, *low)))?,
        Start::Time(ms) => starts_at_time(consumer, *ms, &lows, &ranges, timeout)?,
        Start::Offsets(explicit) => {
            ranges.retain(|key, _| explicit.iter().any(|(t, p, _)| (t, p) == (&key.0, &key.1)));
            offsets(explicit.iter().map(|(t, p, o)| (t.as_str(), *p, *o)))?
        }
    };
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

fn offsets<'a>(starts: impl Iterator<Item = (&'a str, i32, i64)>) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in starts {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(Error::Kafka)?;
    }
    Ok(list)
}

/// Where each partition's records from `ms` on start. The lookup narrows the read; records
/// older than the start are also skipped one by one, so a broker that answers it wrongly costs
/// time, never correctness.
fn starts_at_time(
    consumer: &StreamConsumer,
    ms: i64,
    lows: &BTreeMap<(String, i32), i64>,
    ranges: &Ranges,
    timeout: Duration,
) -> Result<TopicPartitionList> {
    let query = offsets(lows.keys().map(|(t, p)| (t.as_str(), *p, ms)))?;
    let found = consumer
        .offsets_for_times(query, timeout)
        .map_err(Error::Kafka)?;
    let mut starts = Vec::new();
    for e in found.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let low = lows.get(&key).copied().unwrap_or(0);
        let offset = match e.offset() {
            Offset::Offset(o) if o >= low => o,
            Offset::End => ranges.get(&key).map_or(low, |r| r.end),
            _ => low,
        };
        starts.push((e.topic().to_owned(), e.partition(), offset));
    }
    offsets(starts.iter().map(|(t, p, o)| (t.as_str(), *p, *o)))
}

/// How long the broker may have nothing before a partial batch is written.
const IDLE_GAP: Duration = Duration::from_millis(200);

/// Replays and returns the summary; `progress(read, total)` is called after every batch.
pub async fn replay(
    config: &ReplayConfig,
    pool: &PgPool,
    health: &Health,
    metrics: &WorkerMetrics,
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
    let mut dry_tx = if config.dry_run {
        Some(pool.begin().await?)
    } else {
        None
    };
    while ranges.values().any(|r| !r.done) {
        let records = next_batch(&consumer, config, &mut ranges, &mut summary, cancel).await?;
        match dry_tx.as_mut() {
            Some(tx) => apply_dry(tx, &records, &mut summary).await?,
            None => {
                let (report, poison) =
                    apply_records(pool, &records, health, metrics, cancel).await?;
                summary.rejected += poison.len() as u64;
                for ((_, outcome), n) in report.by_topic {
                    summary.add(outcome, n);
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

/// The next batch, decoded as it arrives (a batch holds no raw copy of its records): up to
/// `--batch-max`, written early only when the broker has had nothing for a moment (a slow tail,
/// a filtered range). Records past their partition's end or outside the time window are left.
async fn next_batch(
    consumer: &StreamConsumer,
    config: &ReplayConfig,
    ranges: &mut Ranges,
    summary: &mut ReplaySummary,
    cancel: &CancellationToken,
) -> Result<Vec<Record>> {
    let start_ms = match config.start {
        Start::Time(ms) => Some(ms),
        _ => None,
    };
    let mut records: Vec<Record> = Vec::new();
    while records.len() < config.batch_max {
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
        records.push(decode_record(
            &message,
            &config.trust,
            crate::clock::now_ms(),
        ));
        if ranges.values().all(|r| r.done) {
            break;
        }
    }
    Ok(records)
}

/// The batch as the worker writes it, inside the one transaction a dry run rolls back.
async fn apply_dry(
    tx: &mut PgConnection,
    records: &[Record],
    summary: &mut ReplaySummary,
) -> Result<()> {
    let mut events = Vec::with_capacity(records.len());
    for record in records {
        match &record.decoded {
            Ok(event) => events.push(event),
            Err(e) => {
                warn_undecodable(record, e);
                summary.rejected += 1;
            }
        }
    }
    for outcome in apply_events(tx, &events, Intent::DryRun).await? {
        summary.add(EventOutcome::from(outcome), 1);
    }
    Ok(())
}

impl ReplaySummary {
    fn add(&mut self, outcome: EventOutcome, n: u64) {
        match outcome {
            EventOutcome::Applied => self.applied += n,
            EventOutcome::Stale => self.stale += n,
            EventOutcome::Duplicate => self.duplicate += n,
            EventOutcome::Ignored => self.ignored += n,
            EventOutcome::DeadLettered => {}
        }
    }
}
