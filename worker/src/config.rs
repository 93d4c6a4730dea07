use std::time::Duration;

/// Everything the worker needs besides its database pool (`Debug` redacts secret Kafka options).
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
    /// The group protocol, and with the classic one how long a dead worker keeps its
    /// partitions.
    pub membership: clerk_sync_kafka::Membership,
    /// Where records that can never be applied go.
    pub dlq_topic: String,
    /// Extra librdkafka properties (TLS, SASL, …), applied last.
    pub kafka_options: clerk_sync_kafka::options::KafkaOptions,
    /// How often the lag gauges are refreshed.
    pub lag_interval: Duration,
    /// Identifies this process in logs and dead letters.
    pub worker_id: String,
    /// What a record must show before it is applied (signature, no future version).
    pub trust: std::sync::Arc<crate::Trust>,
}

impl WorkerConfig {
    /// The first setting that cannot work, named: the one place the worker's settings are
    /// checked, rejecting rather than clamping.
    pub fn validate(&self) -> crate::Result<()> {
        let refuse = |setting: &'static str, expected: &str| {
            Err(crate::Error::Setting {
                setting,
                expected: expected.to_owned(),
            })
        };
        if self.batch_max == 0 {
            return refuse("BATCH_MAX", "at least 1");
        }
        if self.group_id.trim().is_empty() {
            return refuse("KAFKA_GROUP_ID", "a consumer group name");
        }
        if self.lag_interval < Duration::from_millis(100) {
            return refuse("LAG_REFRESH_MS", "at least 100 (milliseconds)");
        }
        // librdkafka's own bounds for session.timeout.ms.
        if let clerk_sync_kafka::Membership::Classic { session_timeout } = self.membership {
            if !(1..=3_600_000).contains(&session_timeout.as_millis()) {
                return refuse("KAFKA_SESSION_TIMEOUT_MS", "1..3600000 (milliseconds)");
            }
        }
        if self.trust.max_clock_skew > Duration::from_secs(86_400) {
            return refuse("MAX_CLOCK_SKEW_SECS", "at most 86400 (seconds)");
        }
        if self.dlq_topic.trim().is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return refuse("TOPIC_*", "non-empty topic names");
        }
        Ok(())
    }
}
