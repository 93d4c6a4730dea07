use std::time::Duration;

use anyhow::Result;
use clerk_sync::local::{KafkaSettings, LocalKafka};
use clerk_sync_core::Topics;
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
}

impl TestKafka {
    pub async fn new() -> Result<Self> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) => Self::on(brokers, None).await,
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
        Self::on(broker.brokers(), Some(broker)).await
    }

    /// The test's own broker (a test that stops or restarts it started one).
    pub fn broker(&mut self) -> &mut LocalKafka {
        self.broker
            .as_mut()
            .expect("this test needs a private broker (TestKafka::private)")
    }

    async fn on(brokers: String, broker: Option<LocalKafka>) -> Result<Self> {
        let prefix = format!("{}.", unique("t"));
        let topics = Topics::with_prefix(&prefix);
        let dlq = format!("{prefix}clerk.dlq");
        let kafka = TestKafka {
            brokers,
            topics,
            dlq,
            group: unique("g-"),
            broker,
        };
        kafka.create_topics().await?;
        Ok(kafka)
    }

    pub async fn create_topics(&self) -> Result<()> {
        let mut names = self.topics.synced();
        names.push(self.dlq.clone());
        clerk_sync::topics::ensure_topics(&self.brokers, &[], &names, PARTITIONS, 1).await
    }

    /// Writes a record straight to a topic, bypassing ingest (poison records).
    pub async fn produce(&self, topic: &str, key: &str, value: &[u8], svix_id: &str) -> Result<()> {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "0")
            .create()?;
        let headers = OwnedHeaders::new().insert(Header {
            key: "svix-id",
            value: Some(svix_id),
        });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
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
