use std::time::Duration;

use anyhow::Result;
use clerk_sync_core::Topics;
use clerk_sync_local::{KafkaSettings, LocalKafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::unique;

pub const PARTITIONS: i32 = 3;

/// Topics and a consumer group of the test's own, on a shared or private broker.
pub struct TestKafka {
    pub brokers: String,
    pub topics: Topics,
    pub dlq: String,
    pub group: String,
    /// A broker of the test's own, which it may stop, kill, pause and start again.
    pub broker: Option<LocalKafka>,
    /// Replicas of each of the test's topics.
    pub replication: i32,
}

impl TestKafka {
    pub async fn new() -> Result<Self> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) => Self::on(brokers, None, 1).await,
            Err(_) => Self::private().await,
        }
    }

    /// On a single-node Apache Kafka of the test's own.
    pub async fn private() -> Result<Self> {
        Self::private_with(KafkaSettings::default()).await
    }

    /// On an Apache Kafka of the test's own, started with `settings`.
    pub async fn private_with(settings: KafkaSettings) -> Result<Self> {
        let broker = settings.start().await?;
        Self::on(broker.brokers(), Some(broker), 1).await
    }

    /// On a three-node cluster of the test's own (replication 3, `min.insync.replicas=2`, no
    /// unclean leader election), its topics replicated three times.
    pub async fn cluster() -> Result<Self> {
        let broker = KafkaSettings::default().nodes(3).start().await?;
        Self::on(broker.brokers(), Some(broker), 3).await
    }

    /// The test's own broker (a test that stops or restarts it started one).
    pub fn broker(&mut self) -> &mut LocalKafka {
        self.broker
            .as_mut()
            .expect("this test needs a private broker (TestKafka::private)")
    }

    async fn on(brokers: String, broker: Option<LocalKafka>, replication: i32) -> Result<Self> {
        let prefix = format!("{}.", unique("t"));
        let topics = Topics::with_prefix(&prefix);
        let dlq = format!("{prefix}clerk.dlq");
        let kafka = TestKafka {
            brokers,
            topics,
            dlq,
            group: unique("g-"),
            broker,
            replication,
        };
        kafka.create_topics().await?;
        Ok(kafka)
    }

    pub async fn create_topics(&self) -> Result<()> {
        let mut names = self.topics.synced();
        names.push(self.dlq.clone());
        clerk_sync_kafka::topics::ensure_topics(
            &self.brokers,
            &[],
            &names,
            PARTITIONS,
            self.replication,
        )
        .await?;
        Ok(())
    }

    /// Writes a record straight to a topic, bypassing ingest (poison records).
    pub async fn produce(&self, topic: &str, key: &str, value: &[u8], svix_id: &str) -> Result<()> {
        self.send(topic, key, value, &signed_headers(svix_id, value), None)
            .await?;
        Ok(())
    }

    /// Writes a record with only these headers, as anyone who can reach the topic could: no
    /// signature unless one is among them.
    pub async fn produce_with_headers(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(String, String)],
    ) -> Result<(i32, i64)> {
        self.send(topic, key, value, headers, None).await
    }

    /// Writes a record with the timestamp `at_ms` (its CreateTime), bypassing ingest.
    pub async fn produce_at(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        svix_id: &str,
        at_ms: i64,
    ) -> Result<(i32, i64)> {
        self.send(
            topic,
            key,
            value,
            &signed_headers(svix_id, value),
            Some(at_ms),
        )
        .await
    }

    async fn send(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(String, String)],
        at_ms: Option<i64>,
    ) -> Result<(i32, i64)> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "0")
            .create()?;
        let headers = owned_headers(headers);
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers);
        if let Some(at_ms) = at_ms {
            record = record.timestamp(at_ms);
        }
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        Ok((delivery.partition, delivery.offset))
    }

    /// Writes `records` (key, value, svix id) to `topic` as few produce requests as librdkafka
    /// makes of them lingering a second: several records per record batch. Returns how many
    /// landed on each partition.
    pub async fn produce_batched(
        &self,
        topic: &str,
        records: &[(String, Vec<u8>, String)],
    ) -> Result<std::collections::BTreeMap<i32, i64>> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "1000")
            .set("batch.num.messages", "10000")
            .create()?;
        // Enqueued at once (send_result), not one awaited after the other: they linger together.
        let mut deliveries = Vec::new();
        for (key, value, svix_id) in records {
            let headers = owned_headers(&signed_headers(svix_id, value));
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        let mut per_partition = std::collections::BTreeMap::new();
        for delivery in deliveries {
            let delivery = delivery.await?.map_err(|(e, _)| e)?;
            *per_partition.entry(delivery.partition).or_insert(0) += 1;
        }
        Ok(per_partition)
    }

    /// Runs one of Kafka's own command-line tools (from the same jars as the local broker)
    /// against this broker, e.g. `org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`;
    /// its standard output, or an error quoting its standard error.
    pub async fn kafka_tool(&self, main_class: &str, args: &[&str]) -> Result<String> {
        let classpath =
            tokio::task::spawn_blocking(clerk_sync_local::kafka::Classpath::find).await??;
        let scratch = tempfile::tempdir()?;
        let output =
            clerk_sync_local::kafka::run_tool(&classpath, scratch.path(), main_class, args).await?;
        anyhow::ensure!(
            output.status.success(),
            "{main_class} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Records written to `topic` (sum of high watermarks). Retried briefly: right after a
    /// broker outage the first metadata request can fail.
    pub fn record_count(&self, topic: &str) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self.try_record_count(topic) {
                Ok(n) => return Ok(n),
                Err(e) if attempt >= 10 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    fn try_record_count(&self, topic: &str) -> Result<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", unique("probe-"))
            .create()?;
        let mut total = 0;
        for partition in 0..PARTITIONS {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
            total += high - low.max(0);
        }
        Ok(total)
    }

    pub fn total_records(&self) -> Result<i64> {
        self.topics
            .synced()
            .iter()
            .map(|t| self.record_count(t))
            .sum()
    }

    /// The node leading `topic`'s `partition`, as the cluster's metadata says.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Result<u32> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("allow.auto.create.topics", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let leader = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .filter(|l| *l >= 0)
            .ok_or_else(|| anyhow::anyhow!("{topic}/{partition} has no leader"))?;
        Ok(u32::try_from(leader)?)
    }

    /// Whether every partition of the test's topics has all its replicas in sync.
    pub fn fully_replicated(&self) -> Result<bool> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("allow.auto.create.topics", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        let mut names = self.topics.synced();
        names.push(self.dlq.clone());
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| names.iter().any(|n| n == t.name()))
            .flat_map(|t| t.partitions())
            .all(|p| p.isr().len() == p.replicas().len() && p.leader() >= 0))
    }

    /// The group's committed offsets per (topic, partition); absent when nothing is committed.
    pub fn committed(&self) -> Result<Vec<(String, i32, i64)>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for topic in self.topics.synced() {
            for partition in 0..PARTITIONS {
                tpl.add_partition(&topic, partition);
            }
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
                _ => None,
            })
            .collect())
    }
}

/// The headers ingest gives a record: its Svix id, timestamp and signature under the test
/// secret. A body that is not UTF-8 (which Svix cannot sign) is signed with the test record key,
/// as clerk-sync signs what it writes itself: either way the worker believes it and gets to
/// judge the body.
pub fn signed_headers(svix_id: &str, body: &[u8]) -> Vec<(String, String)> {
    signed_headers_with(super::TEST_SECRET, svix_id, body)
}

/// [`signed_headers`] under another Svix secret (a rotation's old or new one).
pub fn signed_headers_with(secret: &str, svix_id: &str, body: &[u8]) -> Vec<(String, String)> {
    use clerk_sync_core::record_header;
    let mut headers = vec![(record_header::EVENT_ID.to_owned(), svix_id.to_owned())];
    match super::svix_signature(secret, svix_id, body) {
        Some((timestamp, signature)) => {
            headers.push((record_header::TIMESTAMP.to_owned(), timestamp));
            headers.push((record_header::SIGNATURE.to_owned(), signature));
        }
        None => {
            let signer =
                clerk_sync_kafka::provenance::RecordSigner::new(&[clerk_sync_core::Secret::new(
                    super::TEST_RECORD_KEY,
                )])
                .expect("the test record key");
            headers.push((record_header::EVENT_TYPE.to_owned(), "unknown".to_owned()));
            headers.push((
                record_header::OWN_SIGNATURE.to_owned(),
                signer.sign(svix_id, "unknown", body),
            ));
        }
    }
    headers
}

/// `headers` as a record carries them.
pub fn owned_headers(headers: &[(String, String)]) -> rdkafka::message::OwnedHeaders {
    use rdkafka::message::{Header, OwnedHeaders};
    headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value),
        })
    })
}
