//! A steady stream of webhooks delivered as Svix delivers them (each retried until it is
//! accepted), and a watch on the consumer group's committed offsets while it flows: for tests
//! that break the broker mid-stream and then count what was acknowledged, stored and applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clerk_sync_core::record_header;
use clerk_sync_core::testkit::SimEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::kafka::PARTITIONS;
use super::{signed_post, TestKafka, TEST_SECRET};

/// Svix gives up on a message after days; a test gives up after this.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// What a stream's sender saw.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Svix ids answered 2xx: ingest promised the broker had them.
    pub acknowledged: BTreeSet<String>,
    /// Answers other than 2xx (503 while the broker is away), each retried.
    pub refused: u64,
    /// Requests that got no answer at all, each retried.
    pub failed: u64,
    /// Svix ids never accepted before [`GIVE_UP_AFTER`].
    pub abandoned: Vec<String>,
    /// When each 2xx was answered, and each refusal: to tell what was answered during a fault.
    pub accepted_at: Vec<(String, Instant)>,
    pub refused_at: Vec<Instant>,
}

impl Delivered {
    /// Webhooks acknowledged among `synced` that no record in `stored` carries.
    pub fn lost(&self, synced: &BTreeSet<String>, stored: &BTreeSet<String>) -> Vec<String> {
        self.acknowledged
            .intersection(synced)
            .filter(|id| !stored.contains(*id))
            .cloned()
            .collect()
    }

    /// Acceptances (2xx) of the webhooks among `ids` answered within `from..to`.
    pub fn accepted_between(&self, ids: &BTreeSet<String>, from: Instant, to: Instant) -> usize {
        self.accepted_at
            .iter()
            .filter(|(id, at)| ids.contains(id) && (from..to).contains(at))
            .count()
    }

    /// Refusals (non-2xx answers) within `from..to`.
    pub fn refused_between(&self, from: Instant, to: Instant) -> usize {
        self.refused_at
            .iter()
            .filter(|at| (from..to).contains(*at))
            .count()
    }
}

/// Webhooks being sent at a steady rate, each its own task retried with Svix-like backoff.
pub struct Stream {
    tasks: tokio::task::JoinSet<(String, Outcome)>,
}

struct Outcome {
    /// When it was accepted; `None` when abandoned.
    accepted: Option<Instant>,
    refused: Vec<Instant>,
    failed: u64,
}

impl Stream {
    /// Starts sending `events` in order to `url`, `per_second` of them each second.
    pub fn start(url: String, events: Vec<SimEvent>, per_second: u32) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTP client");
        let started = tokio::time::Instant::now();
        let interval = Duration::from_secs(1) / per_second.max(1);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, event) in events.into_iter().enumerate() {
            let (client, url) = (client.clone(), url.clone());
            let at = started + interval * i as u32;
            tasks.spawn(async move {
                tokio::time::sleep_until(at).await;
                let outcome = deliver(&client, &url, &event).await;
                (event.svix_id, outcome)
            });
        }
        Stream { tasks }
    }

    /// Waits until every webhook was accepted or abandoned.
    pub async fn finish(mut self) -> Result<Delivered> {
        let mut delivered = Delivered::default();
        while let Some(joined) = self.tasks.join_next().await {
            let (svix_id, outcome) = joined?;
            delivered.refused += outcome.refused.len() as u64;
            delivered.refused_at.extend(outcome.refused);
            delivered.failed += outcome.failed;
            match outcome.accepted {
                Some(at) => {
                    delivered.accepted_at.push((svix_id.clone(), at));
                    delivered.acknowledged.insert(svix_id);
                }
                None => delivered.abandoned.push(svix_id),
            }
        }
        Ok(delivered)
    }
}

async fn deliver(client: &reqwest::Client, url: &str, event: &SimEvent) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        accepted: None,
        refused: Vec::new(),
        failed: 0,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match signed_post(client, url, TEST_SECRET, &event.svix_id, &event.body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                outcome.accepted = Some(Instant::now());
                return outcome;
            }
            Ok(_) => outcome.refused.push(Instant::now()),
            Err(_) => outcome.failed += 1,
        }
        if started.elapsed() > GIVE_UP_AFTER {
            return outcome;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The group's committed offsets, sampled every 100 ms on a thread of its own until dropped.
pub struct CommitWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<CommitHistory>>,
}

/// What a [`CommitWatch`] saw.
#[derive(Debug, Default)]
pub struct CommitHistory {
    /// Samples in which a partition's committed offset was lower than in an earlier one.
    pub regressions: Vec<String>,
    /// The last committed offset seen per (topic, partition).
    pub last: BTreeMap<(String, i32), i64>,
    /// Samples that failed (the broker away): skipped.
    pub failed_samples: u64,
    pub samples: u64,
    /// The longest a partition had records beyond its committed offset without that offset
    /// moving: how long it went unconsumed, to within the worker's 1 s auto-commit interval.
    pub longest_gap: Duration,
}

impl CommitWatch {
    pub fn start(kafka: &TestKafka) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", &kafka.group)
            .set("allow.auto.create.topics", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for topic in kafka.topics.synced() {
            for partition in 0..PARTITIONS {
                tpl.add_partition(&topic, partition);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut history = CommitHistory::default();
            // Per partition: since when its committed offset has not moved while behind.
            let mut stalled_since: BTreeMap<(String, i32), Instant> = BTreeMap::new();
            let mut previous: BTreeMap<(String, i32), i64> = BTreeMap::new();
            while !stopping.load(Ordering::Relaxed) {
                match consumer.committed_offsets(tpl.clone(), Duration::from_secs(2)) {
                    Ok(committed) => {
                        history.samples += 1;
                        for e in committed.elements() {
                            let key = (e.topic().to_owned(), e.partition());
                            let offset = match e.offset() {
                                Offset::Offset(o) => o,
                                _ => 0,
                            };
                            let high = consumer
                                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
                                .map(|(_, h)| h);
                            let moved = previous.insert(key.clone(), offset) != Some(offset);
                            match high {
                                Ok(high) if high > offset && !moved => {
                                    let since = *stalled_since
                                        .entry(key.clone())
                                        .or_insert_with(Instant::now);
                                    history.longest_gap = history.longest_gap.max(since.elapsed());
                                }
                                Ok(high) if high > offset => {
                                    stalled_since.insert(key.clone(), Instant::now());
                                }
                                Ok(_) => {
                                    stalled_since.remove(&key);
                                }
                                // The broker away: the partition stays as it was.
                                Err(_) => {}
                            }
                            if !matches!(e.offset(), Offset::Offset(_)) {
                                continue;
                            }
                            let before = history.last.insert(key, offset);
                            if before.is_some_and(|b| b > offset) {
                                history.regressions.push(format!(
                                    "{}/{}: {} after {}",
                                    e.topic(),
                                    e.partition(),
                                    offset,
                                    before.unwrap_or_default()
                                ));
                            }
                        }
                    }
                    Err(_) => history.failed_samples += 1,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            history
        });
        Ok(CommitWatch {
            stop,
            thread: Some(thread),
        })
    }

    /// The offsets committed at this moment (the latest sample).
    pub fn finish(mut self) -> CommitHistory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The Svix ids of `delivery`'s events that ingest publishes: events of types the sync ignores
/// are acknowledged and never published.
pub fn synced_ids(delivery: &[SimEvent]) -> BTreeSet<String> {
    delivery
        .iter()
        .filter(|e| {
            clerk_sync_core::route_body(&e.body)
                .is_ok_and(|r| r.route.stream != clerk_sync_core::TopicRole::Other)
        })
        .map(|e| e.svix_id.clone())
        .collect()
}

/// The Svix ids of every record on the test's synced topics, read from the start of the log.
pub fn stored_event_ids(kafka: &TestKafka) -> Result<BTreeSet<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", super::unique("reader-"))
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for topic in kafka.topics.synced() {
        for partition in 0..PARTITIONS {
            let (low, high) =
                consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
            remaining += high - low;
            tpl.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while remaining > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{remaining} records never read back"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        remaining -= 1;
        let id = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == record_header::EVENT_ID)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        ids.extend(id);
    }
    Ok(ids)
}
