use std::sync::atomic::{AtomicUsize, Ordering};
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

    /// Whether the destination answers within `timeout` (`/readyz`).
    fn is_reachable(&self, timeout: Duration) -> BoxFuture<'_, bool>;

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

    fn is_reachable(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(Publisher::is_reachable(self, timeout))
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

    pub(crate) async fn is_reachable(&self, timeout: Duration) -> bool {
        match self {
            Publishing::Kafka(p) => p.is_reachable(timeout).await,
            Publishing::Other(p) => p.is_reachable(timeout).await,
        }
    }

    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        match self {
            Publishing::Kafka(p) => p.flush(timeout).await,
            Publishing::Other(p) => p.flush(timeout).await,
        }
    }
}

/// Records in flight below which a record is sent at once rather than lingering for company.
const EAGER_BELOW: usize = 4;

/// Idempotent producers that report success only once the broker has acknowledged the write.
///
/// Two of them, over the same settings: `linger.ms` lets librdkafka batch under load, but it
/// delays every record by that much when ingest is idle (librdkafka cannot linger only when
/// busy). So a record goes through the eager producer (`linger.ms=0`) while few others are in
/// flight, and through the batching one under load. Records of one entity may then take either
/// way and reach Kafka in another order than they reached ingest; the worker's version guards
/// make the order irrelevant, as they do for Svix's own retries.
#[derive(Clone)]
pub struct Publisher {
    eager: Arc<Replaceable>,
    batching: Arc<Replaceable>,
    in_flight: Arc<AtomicUsize>,
    deadline: Duration,
}

/// The record's headers: the Svix id, timestamp and event type, and the W3C trace context of
/// the current span, so that the worker continues this request's trace.
fn headers(webhook: &VerifiedWebhook, event_type: &str) -> OwnedHeaders {
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    let more = std::iter::once((record_header::TIMESTAMP, webhook.timestamp()))
        .chain(carrier.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    clerk_sync_kafka::event_headers(webhook.id(), event_type, more)
}

/// Counts a record in flight until dropped (also when the request is cancelled).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Publisher {
    pub fn new(brokers: &str, options: &[(String, String)], deadline: Duration) -> Result<Self> {
        let batching = clerk_sync_kafka::config(Role::Ingest { deadline }, brokers, options);
        let mut eager = batching.clone();
        eager.set("linger.ms", "0");
        Ok(Publisher {
            eager: Arc::new(Replaceable::new(eager, "ingest").map_err(Error::Kafka)?),
            batching: Arc::new(Replaceable::new(batching, "ingest").map_err(Error::Kafka)?),
            in_flight: Arc::new(AtomicUsize::new(0)),
            deadline,
        })
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
        let headers = headers(webhook, event_type);
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(webhook.body().as_ref())
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let others = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(self.in_flight.clone());
        let lane = if others < EAGER_BELOW {
            &self.eager
        } else {
            &self.batching
        };
        let producer = lane.producer();
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
            lane.replace_if_unusable(match e {
                Error::Kafka(e) => Some(e),
                _ => None,
            });
        }
        result
    }

    /// Whether the broker answers both producers' metadata requests within `timeout` (which
    /// also connects both, so the first burst does not wait for the batching one to connect).
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        let producers = [self.eager.producer(), self.batching.producer()];
        tokio::task::spawn_blocking(move || {
            producers
                .iter()
                .all(|p| p.client().fetch_metadata(None, timeout).is_ok())
        })
        .await
        .unwrap_or(false)
    }

    /// Waits for queued records to be delivered (shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producers = [self.eager.producer(), self.batching.producer()];
        let until = std::time::Instant::now() + timeout;
        tokio::task::spawn_blocking(move || {
            producers.iter().try_for_each(|p| {
                p.flush(until.saturating_duration_since(std::time::Instant::now()))
            })
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(Error::Kafka)
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}
