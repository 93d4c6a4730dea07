use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use clerk_sync_core::record_header;
use clerk_sync_kafka::{Replaceable, Role};

use crate::{Error, Result, VerifiedWebhook};

/// Where the broker wrote a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
}

/// What ingest's background check found (`/readyz` answers from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The broker did not answer.
    Unreachable,
    /// The broker answers but lacks these topics.
    MissingTopics(Vec<String>),
}

/// A boxed future: what [`Publish`] returns, so that it can be a trait object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where verified webhooks go: Kafka in production ([`Publisher`]), a fake in tests, so that
/// every answer ingest gives can be tested in-process, without a broker.
pub trait Publish: Send + Sync + 'static {
    /// Stores the verified body under `topic` and `key`; `Ok` only once it is durable.
    fn publish<'a>(
        &'a self,
        webhook: &'a VerifiedWebhook,
        event_type: &'a str,
        topic: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Published>>;

    /// Whether the destination answers within `timeout` and has every one of `topics`
    /// (`/readyz`).
    fn readiness<'a>(&'a self, topics: &'a [String], timeout: Duration)
        -> BoxFuture<'a, Readiness>;

    /// Waits for what is in flight (shutdown).
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, Result<()>>;
}

impl Publish for Publisher {
    fn publish<'a>(
        &'a self,
        webhook: &'a VerifiedWebhook,
        event_type: &'a str,
        topic: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Published>> {
        Box::pin(Publisher::publish(self, webhook, event_type, topic, key))
    }

    fn readiness<'a>(
        &'a self,
        topics: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Readiness> {
        Box::pin(Publisher::readiness(self, topics, timeout))
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(Publisher::flush(self, timeout))
    }
}

/// Where ingest's requests publish: Kafka, called directly (no allocation per request), or any
/// other [`Publish`] (a fake, in tests), through the trait.
#[derive(Clone)]
pub(crate) enum Publishing {
    Kafka(Publisher),
    Other(Arc<dyn Publish>),
}

impl Publishing {
    pub(crate) async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        event_type: &str,
        topic: &str,
        key: Option<&str>,
    ) -> Result<Published> {
        match self {
            Publishing::Kafka(p) => p.publish(webhook, event_type, topic, key).await,
            Publishing::Other(p) => p.publish(webhook, event_type, topic, key).await,
        }
    }

    pub(crate) async fn readiness(&self, topics: &[String], timeout: Duration) -> Readiness {
        match self {
            Publishing::Kafka(p) => p.readiness(topics, timeout).await,
            Publishing::Other(p) => p.readiness(topics, timeout).await,
        }
    }

    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        match self {
            Publishing::Kafka(p) => p.flush(timeout).await,
            Publishing::Other(p) => p.flush(timeout).await,
        }
    }
}

/// An idempotent producer that reports success only once the broker has acknowledged the
/// write. It sends a record at once (`linger.ms=0`, the Ingest role's): under load librdkafka
/// still batches the records that queue while a request is in flight, and on Apache Kafka that
/// measured faster than lingering and than a second, lingering producer for bursts
/// (BENCHMARKS.md, ingest). An operator's `linger.ms` in `KAFKA_OPTIONS` wins.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<Replaceable>,
    deadline: Duration,
}

/// The record's headers: the Svix id, timestamp, signature and event type (the worker verifies
/// the signature again: the record's provenance), and the W3C trace context of the current span,
/// so that the worker continues this request's trace.
fn headers(webhook: &VerifiedWebhook, event_type: &str) -> OwnedHeaders {
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    let more = [
        (record_header::TIMESTAMP, webhook.timestamp()),
        (record_header::SIGNATURE, webhook.signature()),
    ]
    .into_iter()
    .chain(carrier.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    clerk_sync_kafka::event_headers(webhook.id(), event_type, more)
}

impl Publisher {
    pub fn new(brokers: &str, options: &[(String, String)], deadline: Duration) -> Result<Self> {
        let config = clerk_sync_kafka::config(Role::Ingest { deadline }, brokers, options);
        Ok(Publisher {
            producer: Arc::new(Replaceable::new(config, "ingest").map_err(Error::Kafka)?),
            deadline,
        })
    }

    /// Publishes the exact verified body with the Svix id, timestamp, signature and event type
    /// as headers.
    #[instrument(skip_all, fields(topic, svix_id = webhook.id()))]
    pub async fn publish(
        &self,
        webhook: &VerifiedWebhook,
        event_type: &str,
        topic: &str,
        key: Option<&str>,
    ) -> Result<Published> {
        let headers = headers(webhook, event_type);
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(webhook.body().as_ref())
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let producer = self.producer.producer();
        let delivery = producer.send(record, Timeout::After(Duration::ZERO));
        let result = match tokio::time::timeout(self.deadline, delivery).await {
            Err(_) => Err(Error::PublishTimeout(self.deadline)),
            Ok(Err((e, _))) => Err(Error::Kafka(e)),
            Ok(Ok(delivery)) => Ok(Published {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        };
        if let Err(e) = &result {
            self.producer.replace_if_unusable(match e {
                Error::Kafka(e) => Some(e),
                _ => None,
            });
        }
        result
    }

    /// Whether the broker answers the producer's metadata request within `timeout` (which also
    /// connects it before the first webhook), and lists every one of `topics`: no client of ours creates a topic (a broker's
    /// `auto.create.topics.enable` would make it with its defaults), so a missing one is said.
    pub async fn readiness(&self, topics: &[String], timeout: Duration) -> Readiness {
        let producer = self.producer.producer();
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let Ok(metadata) = producer.client().fetch_metadata(None, timeout) else {
                return Readiness::Unreachable;
            };
            let missing: Vec<String> = topics
                .into_iter()
                .filter(|name| {
                    !metadata.topics().iter().any(|t| {
                        t.name() == name && t.error().is_none() && !t.partitions().is_empty()
                    })
                })
                .collect();
            if missing.is_empty() {
                Readiness::Ready
            } else {
                Readiness::MissingTopics(missing)
            }
        })
        .await
        .unwrap_or(Readiness::Unreachable)
    }

    /// Waits for queued records to be delivered (shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.producer.producer();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .map_err(Error::Kafka)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}
