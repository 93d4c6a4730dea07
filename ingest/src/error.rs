/// The fewest bytes of key a signing secret may have (Svix's own are 24 or 32).
pub const MIN_SECRET_BYTES: usize = 16;

/// Failures of the ingest library (start-up and publishing).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("signing secret number {index} is not a valid Svix secret (expected `whsec_` followed by base64)")]
    InvalidSecret {
        index: usize,
        #[source]
        source: svix::webhooks::WebhookError,
    },
    #[error("signing secret number {index} has {bytes} bytes of key; at least {MIN_SECRET_BYTES} are needed (a short key makes signatures forgeable): use the secret the Clerk dashboard shows")]
    WeakSecret { index: usize, bytes: usize },
    #[error("no signing secret configured")]
    NoSecret,
    #[error("Kafka error")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("the broker did not acknowledge the record within {0:?}")]
    PublishTimeout(std::time::Duration),
    #[error("I/O error")]
    Io(#[source] std::io::Error),
    #[error("{setting}: expected {expected}")]
    Setting {
        setting: &'static str,
        expected: String,
    },
    #[error("registering the metrics")]
    Metrics(#[source] prometheus::Error),
}

impl Error {
    /// Broker trouble passes; configuration mistakes do not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Kafka(_) | Error::PublishTimeout(_) | Error::Io(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use clerk_sync_core::error_chain;
