use std::time::Duration;

use anyhow::Result;
use clerk_sync::local::TansuBroker;
use clerk_sync_core::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::unique;

pub const PARTITIONS: i32 = 3;

/// Topics and a consumer group of the test's own, on a shared or private broker.
pub struct TestKafka {
    pub brokers: String,
    pub topics: Topics,
    pub group: String,
    pub broker: Option<TansuBroker>,
}

impl TestKafka {
    pub async fn new() -> Result<Self> {
        let (brokers, broker) = match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) => (brokers, None),
            Err(_) => {
                let broker = TansuBroker::start().await?;
                (broker.brokers(), Some(broker))
            }
        };
        let topics = Topics::with_prefix(&format!("{}.", unique("t")));
        clerk_sync::topics::ensure_topics(&brokers, &[], &topics.synced(), PARTITIONS, 1).await?;
        Ok(TestKafka {
            brokers,
            topics,
            group: unique("g-"),
            broker,
        })
    }

    /// Records written to `topic` (sum of high watermarks).
    pub fn record_count(&self, topic: &str) -> Result<i64> {
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
