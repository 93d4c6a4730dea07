/// What the Kafka crate can refuse or fail at: settings that cannot work, named; topic
/// administration the brokers refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An admin request the brokers (or librdkafka) refused, with what was asked.
    #[error("{what}")]
    Admin {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Topics that are missing, made otherwise than asked, or that cannot be read back.
    #[error("{0}")]
    Topics(String),
    #[error("{setting}: expected {expected}")]
    Setting {
        setting: &'static str,
        expected: String,
    },
}
