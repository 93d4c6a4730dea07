use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use clerk_sync_kafka::Role;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::batch::BatchReport;
use crate::dead_letter::DeadLetters;
use crate::{Error, Health, Result, WorkerConfig, WorkerMetrics};

/// The worker's consumer. With `enable.auto.commit` librdkafka commits the stored offsets when
/// partitions are taken away (a rebalance, leaving), so the next owner starts right after what
/// this one applied (`tests/e2e/worker_build.rs` shows it).
type WorkerConsumer = StreamConsumer;

/// How often a batch in hand is checked on (see [`Worker::process_staying_in_the_group`]).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A consumer-group member that applies batches of records to Postgres.
pub struct Worker {
    /// Shared with blocking metadata calls, which run off the async threads (the worker runs
    /// on a current-thread runtime too).
    consumer: std::sync::Arc<WorkerConsumer>,
    dead_letters: DeadLetters,
    /// Measures the group's lag every `LAG_REFRESH_MS`, with clients made once.
    lag_probe: std::sync::Arc<crate::lag::LagProbe>,
    pool: PgPool,
    config: WorkerConfig,
    health: Health,
    metrics: WorkerMetrics,
    /// Records received while a batch was in hand (from partitions assigned meanwhile): the next
    /// batch starts with them.
    carried: Mutex<Vec<OwnedMessage>>,
}

impl Worker {
    /// A worker for `config` (checked first: [`WorkerConfig::validate`]), applying to `pool`,
    /// its readiness in `health`, its telemetry in `metrics`.
    pub fn new(
        config: WorkerConfig,
        pool: PgPool,
        health: Health,
        metrics: WorkerMetrics,
    ) -> Result<Self> {
        config.validate()?;
        let client = clerk_sync_kafka::config(
            Role::Worker {
                group: &config.group_id,
                client_id: &config.worker_id,
                membership: config.membership,
            },
            &config.brokers,
            &config.kafka_options,
        );
        let consumer: WorkerConsumer = client.create().map_err(Error::Kafka)?;
        let consumer = std::sync::Arc::new(consumer);
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(Error::Kafka)?;
        let dead_letters = DeadLetters::new(
            &config.brokers,
            &config.kafka_options,
            &config.dlq_topic,
            &config.worker_id,
        )?;
        let lag_probe = std::sync::Arc::new(crate::lag::LagProbe::new(
            &config.brokers,
            &config.kafka_options,
            &config.group_id,
        )?);
        Ok(Worker {
            consumer,
            dead_letters,
            lag_probe,
            pool,
            config,
            health,
            metrics,
            carried: Mutex::new(Vec::new()),
        })
    }

    /// Consumes until `cancel` fires, then finishes the batch in hand, commits and leaves.
    pub async fn run(&self, cancel: CancellationToken) -> Result<()> {
        match self.wait_for_dead_letter_topic(&cancel).await {
            Err(Error::Cancelled) => return Ok(()),
            other => other?,
        }
        info!(group = %self.config.group_id, topics = ?self.config.topics, "worker started");
        let lag_cancel = cancel.child_token();
        let lag = self.refresh_lag(lag_cancel.clone());
        let consume = self.consume(&cancel);
        tokio::pin!(lag);
        let result = tokio::select! {
            result = consume => result,
            _ = &mut lag => Ok(()),
        };
        lag_cancel.cancel();
        result
    }

    /// Waits, not ready, until the dead-letter topic exists: without it the first record that
    /// can never be applied would hold its partition while its write is retried. Says why once
    /// every 30 s.
    async fn wait_for_dead_letter_topic(&self, cancel: &CancellationToken) -> Result<()> {
        let topic = self.config.dlq_topic.as_str();
        let mut last_log: Option<std::time::Instant> = None;
        loop {
            let (consumer, name) = (self.consumer.clone(), topic.to_owned());
            let found = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(Some(&name), Duration::from_secs(5))
                    .map(|m| {
                        m.topics().iter().any(|t| {
                            t.name() == name && t.error().is_none() && !t.partitions().is_empty()
                        })
                    })
            })
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "the topic check did not finish");
                Err(rdkafka::error::KafkaError::Canceled)
            });
            let why = match found {
                Ok(true) => {
                    self.health.set_waiting(None);
                    return Ok(());
                }
                Ok(false) => format!(
                    "dead-letter topic: {topic} does not exist: create it with `clerk-sync topics create`"
                ),
                Err(e) => format!(
                    "dead-letter topic: cannot check that {topic} exists: {}",
                    crate::error_chain(&e)
                ),
            };
            if last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
                warn!(reason = %why, "waiting for the dead-letter topic; not ready");
                last_log = Some(std::time::Instant::now());
            }
            self.health.set_waiting(Some(why));
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn consume(&self, cancel: &CancellationToken) -> Result<()> {
        let cancel = cancel.clone();
        while let Some(batch) = self.next_batch(&cancel).await? {
            match self.process_staying_in_the_group(&batch, &cancel).await {
                Ok(report) => tracing::debug!(?report, "batch done"),
                Err(Error::Cancelled) => {
                    info!("shutdown interrupted a retrying batch; it will be read again");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.commit_now()?;
        info!("worker stopped");
        Ok(())
    }

    /// Waits for the next batch: its first record, then every record already waiting, up to
    /// `batch_max`; then, only if `batch_linger` is set, up to that long for more. So an idle
    /// worker applies a record the moment it arrives, and under load batches grow by themselves:
    /// records pile up while the previous batch is applied. `None` once cancelled.
    pub async fn next_batch(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<OwnedMessage>>> {
        let mut batch = std::mem::take(&mut *self.carried());
        if batch.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                message = self.recv() => batch.push(message),
            }
        }
        // What librdkafka already holds: polled without waiting.
        while batch.len() < self.config.batch_max {
            match tokio::time::timeout(Duration::ZERO, self.recv()).await {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        if !self.config.batch_linger.is_zero() {
            let deadline = tokio::time::Instant::now() + self.config.batch_linger;
            while batch.len() < self.config.batch_max {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    message = self.recv() => batch.push(message),
                }
            }
        }
        Ok(Some(batch))
    }

    /// The next record. Consumer errors (the broker unreachable, a topic missing) are reported
    /// and waited out: librdkafka reconnects by itself, and nothing is committed meanwhile.
    async fn recv(&self) -> OwnedMessage {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    self.health.set_broker_reachable(true);
                    return message.detach();
                }
                Err(e) => {
                    self.health.set_broker_reachable(false);
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
                    ) {
                        warn!(topics = ?self.config.topics, "a topic does not exist: create it with `clerk-sync topics create`");
                    } else {
                        warn!(error = %crate::error_chain(&e), "consumer error; waiting for the broker");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn carried(&self) -> std::sync::MutexGuard<'_, Vec<OwnedMessage>> {
        self.carried.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Self::process_batch`], polling meanwhile once the batch has been in hand for a second
    /// (a database outage being retried, or a long batch). librdkafka takes an application that stops polling for
    /// `max.poll.interval.ms` (5 min) for dead and leaves the group: the batch in hand could
    /// then not be committed, and would be applied twice. So the assigned partitions are paused
    /// (nothing more is read; librdkafka refetches from after the batch once resumed) and the
    /// consumer is polled every second, which also serves rebalances.
    async fn process_staying_in_the_group(
        &self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<BatchReport> {
        let started = tokio::time::Instant::now();
        let work = self.process_batch(batch, cancel);
        tokio::pin!(work);
        let mut checks = tokio::time::interval_at(started + CHECK_EVERY, CHECK_EVERY);
        let mut paused = false;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = checks.tick() => {
                    // Any batch in hand past a check (one second): retrying an outage, or long.
                    // Deciding from the clock alone keeps the retry state where it is kept.
                    if paused || started.elapsed() >= CHECK_EVERY {
                        if !paused {
                            info!("batch still in hand; pausing the partitions and polling meanwhile");
                        }
                        paused = true;
                        self.pause_and_poll().await;
                    }
                }
            }
        };
        if paused {
            match self.consumer.assignment() {
                Ok(assigned) => {
                    if let Err(e) = self.consumer.resume(&assigned) {
                        warn!(error = %crate::error_chain(&e), "could not resume the partitions");
                    }
                }
                Err(e) => {
                    warn!(error = %crate::error_chain(&e), "could not read the assignment to resume it")
                }
            }
        }
        result
    }

    /// Pauses every assigned partition (a rebalance may have brought new ones) and polls once.
    async fn pause_and_poll(&self) {
        match self.consumer.assignment() {
            Ok(assigned) => {
                if let Err(e) = self.consumer.pause(&assigned) {
                    warn!(error = %crate::error_chain(&e), "could not pause the partitions");
                }
            }
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "could not read the assignment to pause it")
            }
        }
        // Paused partitions yield nothing; a record fetched before a partition was paused is
        // kept for the next batch.
        while let Ok(received) =
            tokio::time::timeout(Duration::from_millis(10), self.consumer.recv()).await
        {
            match received {
                Ok(message) => self.carried().push(message.detach()),
                Err(e) => {
                    warn!(error = %crate::error_chain(&e), "consumer error while a batch is in hand");
                    break;
                }
            }
        }
    }

    /// Settles a batch (`fate.rs`): applied, what can never be applied dead-lettered, then the
    /// batch's offsets stored. Callable step by step from tests.
    #[instrument(skip_all, fields(records = batch.len()))]
    pub async fn process_batch(
        &self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<BatchReport> {
        let offsets = ConsumerOffsets(&self.consumer);
        crate::fate::settle(
            batch,
            &self.config.trust,
            &self.pool,
            &self.health,
            &self.metrics,
            &self.dead_letters,
            &offsets,
            cancel,
        )
        .await
    }

    /// Refreshes the lag and freshness gauges every `lag_interval`, idle or not, until cancelled.
    async fn refresh_lag(&self, cancel: CancellationToken) {
        loop {
            // Database and broker reachability for /readyz, which answers from them.
            self.health.refresh_database().await;
            // The broker's, through the consumer's own connections.
            let consumer = self.consumer.clone();
            let reachable = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(None, std::time::Duration::from_secs(2))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            self.health.set_broker_reachable(reachable);
            if reachable {
                let (probe, topics) = (self.lag_probe.clone(), self.config.topics.clone());
                let measured = tokio::task::spawn_blocking(move || {
                    probe.measure(&topics, std::time::Duration::from_secs(5))
                })
                .await;
                match measured {
                    Ok(Ok(lags)) => self.metrics.record_lag(&lags),
                    Ok(Err(e)) => {
                        warn!(error = %crate::error_chain(&e), "could not measure consumer lag")
                    }
                    Err(e) => warn!(error = %crate::error_chain(&e), "lag task failed"),
                }
            } else {
                warn!("the broker does not answer; consumer lag not measured");
            }
            self.metrics.refresh_freshness(crate::clock::now_ms());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.lag_interval) => {}
            }
        }
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

/// The consumer's offset store: librdkafka commits what is stored every second.
struct ConsumerOffsets<'a>(&'a WorkerConsumer);

impl crate::fate::OffsetStore for ConsumerOffsets<'_> {
    fn store(&self, next: &BTreeMap<(String, i32), i64>) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(Error::Kafka)?;
        }
        if let Err(e) = self.0.store_offsets(&tpl) {
            // After a rebalance the partition may belong to another member, which re-reads from
            // the last commit: harmless thanks to version-guarded upserts.
            warn!(error = %crate::error_chain(&e), "could not store offsets (partition revoked?)");
        }
        Ok(())
    }
}
