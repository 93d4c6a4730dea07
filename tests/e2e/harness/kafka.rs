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
    pub dlq: String,
    pub group: String,
    /// Kept so that a private broker lives as long as the test.
    _broker: Option<TansuBroker>,
    /// In front of a private broker when the test wants to cut it off.
    pub proxy: Option<super::proxy::ChaosProxy>,
}

impl TestKafka {
    pub async fn new() -> Result<Self> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) => Self::on(brokers, None).await,
            Err(_) => Self::private().await,
        }
    }

    /// On a broker of the test's own, which it may kill and restart.
    pub async fn private() -> Result<Self> {
        let broker = TansuBroker::start().await?;
        Self::on(broker.brokers(), Some(broker)).await
    }

    /// On a broker of the test's own that clients reach only through a [`ChaosProxy`].
    ///
    /// [`ChaosProxy`]: super::proxy::ChaosProxy
    pub async fn behind_proxy() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let proxy_port = listener.local_addr()?.port();
        let broker = TansuBroker::start_advertising(proxy_port).await?;
        let proxy = super::proxy::ChaosProxy::start(listener, broker.port())?;
        let mut kafka = Self::on(format!("127.0.0.1:{proxy_port}"), Some(broker)).await?;
        kafka.proxy = Some(proxy);
        Ok(kafka)
    }

    async fn on(brokers: String, broker: Option<TansuBroker>) -> Result<Self> {
        let prefix = format!("{}.", unique("t"));
        let topics = Topics::with_prefix(&prefix);
        let dlq = format!("{prefix}clerk.dlq");
        let kafka = TestKafka {
            brokers,
            topics,
            dlq,
            group: unique("g-"),
            _broker: broker,
            proxy: None,
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
