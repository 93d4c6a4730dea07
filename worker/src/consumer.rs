use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use clerk_sync_core::{ClerkEvent, EventMeta};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::apply::{apply_all, Outcome};
use crate::{decode_record, Error, Health, Record, Result, WorkerConfig};

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub applied: usize,
    pub stale: usize,
    pub ignored: usize,
    /// Records that could not be decoded or applied and were skipped.
    pub skipped: usize,
}

/// A consumer-group member that applies batches of records to Postgres.
pub struct Worker {
    consumer: StreamConsumer,
    pool: PgPool,
    config: WorkerConfig,
    health: Health,
}

impl Worker {
    pub fn new(config: WorkerConfig, pool: PgPool, health: Health) -> Result<Self> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("client.id", &config.worker_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, only after the database commit.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            );
        for (key, value) in &config.kafka_options {
            client.set(key, value);
        }
        let consumer: StreamConsumer = client.create().map_err(Error::Kafka)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(Error::Kafka)?;
        Ok(Worker {
            consumer,
            pool,
            config,
            health,
        })
    }

    /// Consumes until `cancel` fires, then finishes the batch in hand, commits and leaves.
    pub async fn run(&self, cancel: CancellationToken) -> Result<()> {
        info!(group = %self.config.group_id, topics = ?self.config.topics, "worker started");
        while let Some(batch) = self.next_batch(&cancel).await? {
            match self.process_batch(&batch, &cancel).await {
                Ok(report) => tracing::debug!(?report, "batch done"),
                Err(e) if cancel.is_cancelled() => {
                    info!(error = %e, "shutdown interrupted a retrying batch; it will be re-read");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.commit_now()?;
        info!("worker stopped");
        Ok(())
    }

    /// Waits for the next batch: up to `batch_max` records or `batch_linger` after the first.
    /// `None` once cancelled.
    pub async fn next_batch(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<OwnedMessage>>> {
        let first = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            message = self.consumer.recv() => message.map_err(Error::Kafka)?.detach(),
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.batch_linger;
        while batch.len() < self.config.batch_max {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                message = self.consumer.recv() => batch.push(message.map_err(Error::Kafka)?.detach()),
            }
        }
        Ok(Some(batch))
    }

    /// Decodes and applies a batch in one transaction, retrying transient failures, then
    /// stores the batch's offsets. Callable step by step from tests.
    #[instrument(skip_all, fields(records = batch.len()))]
    pub async fn process_batch(
        &self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<BatchReport> {
        let records: Vec<Record> = batch.iter().map(decode_record).collect();
        let report = apply_records(&self.pool, &records, &self.health, cancel).await?;
        self.store_offsets(batch)?;
        Ok(report)
    }

    fn store_offsets(&self, batch: &[OwnedMessage]) -> Result<()> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            let entry = next.entry((m.topic(), m.partition())).or_insert(0);
            *entry = (*entry).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(Error::Kafka)?;
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // After a rebalance the partition may belong to another member, which re-reads from
            // the last commit: harmless thanks to idempotent upserts.
            warn!(error = %e, "could not store offsets (partition revoked?)");
        }
        Ok(())
    }

    /// Commits stored offsets synchronously (used at shutdown).
    pub fn commit_now(&self) -> Result<()> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => Ok(()),
            Err(e) => Err(Error::Kafka(e)),
        }
    }
}

/// Applies decodable records, retrying transient database failures with backoff until they
/// succeed or `cancel` fires. A permanent failure falls back to one transaction per record so
/// that one bad record cannot hold back the others.
pub async fn apply_records(
    pool: &PgPool,
    records: &[Record],
    health: &Health,
    cancel: &CancellationToken,
) -> Result<BatchReport> {
    let mut report = BatchReport {
        records: records.len(),
        ..BatchReport::default()
    };
    let mut events: Vec<(EventMeta, ClerkEvent)> = Vec::with_capacity(records.len());
    for record in records {
        match &record.decoded {
            Ok(event) => events.push(event.clone()),
            Err(e) => {
                report.skipped += 1;
                warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
                      error_kind = e.kind(), error = %error_chain(e), "skipping undecodable record");
            }
        }
    }
    match with_retry(|| apply_all(pool, &events), health, cancel).await {
        Ok(outcomes) => count(&mut report, &outcomes),
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(e) if !e.is_retryable() => {
            warn!(error_kind = e.kind(), error = %error_chain(&e), "batch rejected; applying records one by one");
            for event in &events {
                match with_retry(
                    || apply_all(pool, std::slice::from_ref(event)),
                    health,
                    cancel,
                )
                .await
                {
                    Ok(outcomes) => count(&mut report, &outcomes),
                    Err(Error::Cancelled) => return Err(Error::Cancelled),
                    Err(e) if !e.is_retryable() => {
                        report.skipped += 1;
                        warn!(event_id = %event.0.id, error_kind = e.kind(), error = %error_chain(&e),
                              "skipping record the database rejects");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) => return Err(e),
    }
    Ok(report)
}

fn count(report: &mut BatchReport, outcomes: &[Outcome]) {
    for outcome in outcomes {
        match outcome {
            Outcome::Applied => report.applied += 1,
            Outcome::Stale => report.stale += 1,
            Outcome::Ignored => report.ignored += 1,
        }
    }
}

/// Retries transient failures with capped exponential backoff and jitter, forever, until
/// success, a permanent error, or cancellation.
async fn with_retry<T, F, Fut>(op: F, health: &Health, cancel: &CancellationToken) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let policy = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times();
    let retried = op
        .retry(policy)
        .when(|e: &Error| e.is_retryable() && !cancel.is_cancelled())
        .notify(|e: &Error, delay| {
            health.set_retrying(true);
            warn!(error_kind = e.kind(), error = %error_chain(e), ?delay, "transient failure; retrying");
        });
    let result = tokio::select! {
        result = retried => result,
        _ = cancel.cancelled() => Err(Error::Cancelled),
    };
    health.set_retrying(false);
    result
}

/// The error and its causes on one line, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
