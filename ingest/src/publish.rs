use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::instrument;

use crate::{Error, Result, VerifiedWebhook};

/// Where the broker wrote a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent producer that reports success only once the broker has acknowledged the write.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    deadline: Duration,
}

impl Publisher {
    pub fn new(brokers: &str, options: &[(String, String)], deadline: Duration) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // librdkafka gives up when we do, so a 503 is not followed by a late write…
            // (a late write would only be a duplicate, which the worker absorbs).
            .set("message.timeout.ms", deadline.as_millis().to_string())
            .set("linger.ms", "5");
        for (key, value) in options {
            config.set(key, value);
        }
        let producer: FutureProducer = config.create().map_err(Error::Kafka)?;
        Ok(Publisher { producer, deadline })
    }

    /// Publishes the exact verified body with the Svix id, timestamp and event type as headers.
    #[instrument(skip_all, fields(topic, svix_id = webhook.id()))]
    pub async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        event_type: &str,
        topic: &str,
        key: Option<&str>,
    ) -> Result<Published> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "svix-id",
                value: Some(webhook.id()),
            })
            .insert(Header {
                key: "svix-timestamp",
                value: Some(webhook.timestamp()),
            })
            .insert(Header {
                key: "clerk-event-type",
                value: Some(event_type),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(webhook.body().as_ref())
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self.producer.send(record, Timeout::After(Duration::ZERO));
        match tokio::time::timeout(self.deadline, delivery).await {
            Err(_) => Err(Error::PublishTimeout(self.deadline)),
            Ok(Err((e, _))) => Err(Error::Kafka(e)),
            Ok(Ok(delivery)) => Ok(Published {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        }
    }

    /// Whether the broker answers a metadata request within `timeout`.
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Waits for queued records to be delivered (shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .map_err(Error::Kafka)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}
