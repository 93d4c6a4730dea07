use std::time::Duration;

use clerk_sync_core::{Secret, Topics};

/// Everything ingest needs. Parsed and checked by the binary before anything starts.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Signing secrets (`whsec_…`); several during a rotation, any of them verifies.
    pub secrets: Vec<Secret>,
    /// Maximum distance between `svix-timestamp` and now.
    pub tolerance: Duration,
    /// Largest accepted body, in bytes.
    pub body_limit: usize,
    /// How long a request waits for the broker's acknowledgement before answering 503.
    pub publish_deadline: Duration,
    pub topics: Topics,
    /// Extra librdkafka properties (TLS, SASL, linger…), applied last.
    pub kafka_options: Vec<(String, String)>,
}
