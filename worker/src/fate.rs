//! A batch's fate, in one place: decoded, applied in one transaction (transient failures
//! retried, rejected records isolated: `batch.rs`), what can never be applied written to the
//! dead-letter topic, and only then the batch's offsets stored; each occurrence logged and
//! counted together. Where dead letters and offsets go is a seam ([`DeadLetterSink`],
//! [`OffsetStore`]): Kafka in the worker, fakes in tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::batch::{apply_records, with_retry, BatchReport};
use crate::clock::now_ms;
use crate::dead_letter::{DeadLetters, Failure};
use crate::{decode_record, Health, Record, Result, Trust, WorkerMetrics};

/// A boxed future, so that the seams can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records that can never be applied go.
pub trait DeadLetterSink: Send + Sync {
    /// Writes `message` with `failure`'s context; `Ok` once the write is durable.
    fn send<'a>(
        &'a self,
        message: &'a OwnedMessage,
        failure: &'a Failure,
    ) -> BoxFuture<'a, Result<()>>;
    fn topic(&self) -> &str;
}

impl DeadLetterSink for DeadLetters {
    fn send<'a>(
        &'a self,
        message: &'a OwnedMessage,
        failure: &'a Failure,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(DeadLetters::send(self, message, failure))
    }

    fn topic(&self) -> &str {
        DeadLetters::topic(self)
    }
}

/// Where a settled batch's positions go: the next offset to read, per (topic, partition).
pub trait OffsetStore: Send + Sync {
    fn store(&self, next: &BTreeMap<(String, i32), i64>) -> Result<()>;
}

/// Settles a batch: applies it, dead-letters what can never be applied (a failed write is
/// retried, never skipped), then stores its offsets. Nothing is stored unless every record is
/// applied or dead-lettered: an error or cancellation leaves the batch to be read again. A record
/// `trust` does not believe (unsigned, dated in the future) is dead-lettered unread.
// Each argument is a seam tests replace on its own; a struct of them would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    batch: &[OwnedMessage],
    trust: &Trust,
    pool: &PgPool,
    health: &Health,
    metrics: &WorkerMetrics,
    dead_letters: &dyn DeadLetterSink,
    offsets: &dyn OffsetStore,
    cancel: &CancellationToken,
) -> Result<BatchReport> {
    let started = std::time::Instant::now();
    let now = now_ms();
    let records: Vec<Record> = batch.iter().map(|m| decode_record(m, trust, now)).collect();
    let (report, poison) = apply_records(pool, &records, health, metrics, cancel).await?;
    for p in &poison {
        let message = &batch[p.index];
        with_retry(
            || dead_letters.send(message, &p.failure),
            health,
            metrics,
            cancel,
        )
        .await?;
        warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            error_kind = p.failure.kind.as_str(),
            dlq = dead_letters.topic(),
            "record dead-lettered"
        );
        metrics
            .dead_letters
            .with_label_values(&[p.failure.kind.as_str()])
            .inc();
    }
    offsets.store(&next_offsets(batch))?;
    count(metrics, &report, batch.len(), started);
    Ok(report)
}

/// Past the last record of each partition in the batch.
pub fn next_offsets(batch: &[OwnedMessage]) -> BTreeMap<(String, i32), i64> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = next
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    next
}

fn count(
    metrics: &WorkerMetrics,
    report: &BatchReport,
    records: usize,
    started: std::time::Instant,
) {
    for ((topic, outcome), n) in &report.by_topic {
        metrics
            .events
            .with_label_values(&[topic.as_str(), outcome.as_str()])
            .inc_by(*n);
    }
    metrics.batch_size.observe(records as f64);
    metrics
        .batch_duration
        .observe(started.elapsed().as_secs_f64());
    if let Some(at) = report.newest_event_ms {
        metrics.applied_event_at(at);
        metrics.refresh_freshness(now_ms());
    }
}
