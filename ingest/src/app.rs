//! Ingest built from one validated configuration, behind the [`Publish`] seam: the binary
//! builds it with Kafka, tests with a fake, and both get the same router and answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clerk_sync_core::{Secret, Topics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::publish::Publishing;
use crate::{
    router, AppState, Error, IngestMetrics, Publish, Publisher, Readiness, Result, Verifier,
};

/// Everything ingest needs. [`Ingest::build`] checks it; nothing is clamped silently.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Signing secrets (`whsec_…`), any of which may sign (rotation).
    pub secrets: Vec<Secret>,
    /// Accepted age of a signature's timestamp, either way.
    pub tolerance: Duration,
    pub brokers: String,
    /// librdkafka properties for the producers (already filtered for them).
    pub kafka_options: clerk_sync_kafka::options::KafkaOptions,
    /// How long to wait for the broker's acknowledgement before answering 503.
    pub publish_deadline: Duration,
    pub topics: Topics,
    pub body_limit: usize,
    pub max_in_flight: usize,
    /// In-flight requests one client address may hold (an IPv6 client: its /64).
    pub max_in_flight_per_peer: usize,
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// The container's memory limit, when known ([`crate::limits::container_memory_limit`]):
    /// limits whose worst case exceeds it are refused at start-up.
    pub memory_limit: Option<u64>,
}

impl IngestConfig {
    /// The first setting that cannot work, named.
    pub fn validate(&self) -> Result<()> {
        let refuse = |setting: &'static str, expected: &str| {
            Err(Error::Setting {
                setting,
                expected: expected.to_owned(),
            })
        };
        if self.max_in_flight == 0 {
            return refuse("MAX_IN_FLIGHT", "at least 1");
        }
        if self.max_in_flight_per_peer == 0 {
            return refuse("MAX_IN_FLIGHT_PER_PEER", "at least 1");
        }
        if self.max_connections == 0 {
            return refuse("MAX_CONNECTIONS", "at least 1");
        }
        if self.request_timeout.is_zero() {
            return refuse("REQUEST_TIMEOUT_MS", "at least 1");
        }
        if self.body_limit == 0 {
            return refuse("WEBHOOK_BODY_LIMIT", "at least 1 byte");
        }
        // A wide window lets a captured delivery be replayed for that long; Svix's own default
        // is 5 minutes, and an hour covers any sane clock skew.
        if self.tolerance > Duration::from_secs(3600) {
            return refuse("WEBHOOK_TOLERANCE_SECS", "at most 3600 (seconds)");
        }
        // Svix gives up on a request after 15 s.
        if self.publish_deadline.is_zero() || self.publish_deadline >= Duration::from_secs(15) {
            return refuse(
                "PUBLISH_DEADLINE_MS",
                "1..15000 (Svix gives up on a request after 15 s)",
            );
        }
        if let Some(limit) = self.memory_limit {
            let worst = crate::limits::worst_case_bytes(
                self.max_connections,
                self.max_in_flight,
                self.body_limit,
            );
            if worst > limit {
                let mib = |b: u64| b / (1024 * 1024);
                return Err(Error::Setting {
                    setting: "MAX_CONNECTIONS / MAX_IN_FLIGHT / WEBHOOK_BODY_LIMIT",
                    expected: format!(
                        "a worst case within the container's memory limit of {} MiB: {} connections × 16 KiB of head + 2 × {} in flight × {} KiB of body + 64 MiB = {} MiB",
                        mib(limit),
                        self.max_connections,
                        self.max_in_flight,
                        self.body_limit / 1024,
                        mib(worst)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A built ingest: its state, ready to route or serve.
#[derive(Clone)]
pub struct Ingest {
    state: AppState,
}

impl Ingest {
    /// Ingest publishing to Kafka. Settings and secrets are checked before any Kafka client
    /// exists, so a mistake is one line, not a broker's connection errors first.
    pub fn build(config: IngestConfig) -> Result<Self> {
        config.validate()?;
        let verifier = Verifier::new(&config.secrets, config.tolerance)?;
        let publisher = Publisher::new(
            &config.brokers,
            &config.kafka_options,
            config.publish_deadline,
        )?;
        Self::assemble(config, verifier, Publishing::Kafka(publisher))
    }

    /// Ingest publishing through `publisher` (a fake, in tests).
    pub fn with_publisher(config: IngestConfig, publisher: Arc<dyn Publish>) -> Result<Self> {
        config.validate()?;
        let verifier = Verifier::new(&config.secrets, config.tolerance)?;
        Self::assemble(config, verifier, Publishing::Other(publisher))
    }

    fn assemble(config: IngestConfig, verifier: Verifier, publisher: Publishing) -> Result<Self> {
        Ok(Ingest {
            state: AppState {
                verifier: Arc::new(verifier),
                publisher,
                topics: Arc::new(config.topics),
                body_limit: config.body_limit,
                in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
                peers: Arc::default(),
                max_in_flight_per_peer: config.max_in_flight_per_peer,
                request_timeout: config.request_timeout,
                max_connections: config.max_connections,
                readiness: Arc::new(std::sync::RwLock::new(Readiness::Unreachable)),
                metrics: IngestMetrics::new(prometheus::Registry::new()).map_err(Error::Metrics)?,
            },
        })
    }

    /// The webhook route, for serving or for driving in-process.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The operational routes (health, readiness, metrics), served on a listener of their own.
    pub fn ops_router(&self) -> Router {
        crate::routes::ops_router(self.state.clone())
    }

    /// What `/readyz` answers until the next background check ([`Ingest::serve`] runs it).
    pub fn set_broker_ready(&self, ready: bool) {
        let readiness = if ready {
            Readiness::Ready
        } else {
            Readiness::Unreachable
        };
        if let Ok(mut current) = self.state.readiness.write() {
            *current = readiness;
        }
    }

    /// Serves until `cancel` fires, lets in-flight requests finish, then flushes the publisher.
    /// Broker readiness is refreshed in the background meanwhile.
    pub async fn serve(
        self,
        listener: TcpListener,
        ops_listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        crate::serve(listener, ops_listener, self.state, cancel).await
    }
}
