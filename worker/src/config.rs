use std::time::Duration;

/// Everything the worker needs besides its database pool.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    pub group_id: String,
    /// The topics to consume (users, organizations, memberships).
    pub topics: Vec<String>,
    /// A batch closes at this many records…
    pub batch_max: usize,
    /// …or this long after its first record, whichever comes first.
    pub batch_linger: Duration,
    /// Consumer group session timeout: how long a dead worker keeps its partitions.
    pub session_timeout: Duration,
    /// Where records that can never be applied go.
    pub dlq_topic: String,
    /// Extra librdkafka properties (TLS, SASL, …), applied last.
    pub kafka_options: Vec<(String, String)>,
    /// How often the lag gauges are refreshed.
    pub lag_interval: Duration,
    /// Identifies this process in logs and dead letters.
    pub worker_id: String,
}
