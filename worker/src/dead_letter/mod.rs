//! The dead-letter topic: records that can never be applied, with the context an operator needs.

pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use clerk_sync_kafka::{Replaceable, Role};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::{Error, ErrorKind, Result};

/// Context headers added to every dead letter (the original headers are kept as they were).
pub mod header {
    pub const ORIGINAL_TOPIC: &str = "clerk-sync-original-topic";
    pub const ORIGINAL_PARTITION: &str = "clerk-sync-original-partition";
    pub const ORIGINAL_OFFSET: &str = "clerk-sync-original-offset";
    pub const ERROR_KIND: &str = "clerk-sync-error-kind";
    pub const ERROR_MESSAGE: &str = "clerk-sync-error-message";
    pub const ATTEMPTS: &str = "clerk-sync-attempts";
    pub const FIRST_FAILURE_MS: &str = "clerk-sync-first-failure-ms";
    pub const LAST_FAILURE_MS: &str = "clerk-sync-last-failure-ms";
    pub const WORKER_ID: &str = "clerk-sync-worker-id";
    /// Set by `clerk-sync dlq redrive` on the re-published record: `topic:partition:offset` of
    /// the dead letter it came from.
    pub const REDRIVEN_FROM: &str = "clerk-sync-redriven-from";

    /// Every header clerk-sync adds, so a redrive can strip them.
    pub const ALL: &[&str] = &[
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        ERROR_KIND,
        ERROR_MESSAGE,
        ATTEMPTS,
        FIRST_FAILURE_MS,
        LAST_FAILURE_MS,
        WORKER_ID,
    ];
}

/// Why a record is being dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    /// The error with its causes; never personal data (error texts name fields, not values).
    pub message: String,
    pub attempts: u32,
    pub first_failure_ms: i64,
    pub last_failure_ms: i64,
}

/// Publishes dead letters and waits for the broker's acknowledgement.
#[derive(Clone)]
pub struct DeadLetters {
    producer: Arc<Replaceable>,
    topic: String,
    worker_id: String,
}

impl DeadLetters {
    pub fn new(
        brokers: &str,
        options: &[(String, String)],
        topic: &str,
        worker_id: &str,
    ) -> Result<Self> {
        let config = clerk_sync_kafka::config(Role::DeadLetters, brokers, options);
        Ok(DeadLetters {
            producer: Arc::new(Replaceable::new(config, "dead-letter").map_err(Error::Kafka)?),
            topic: topic.to_owned(),
            worker_id: worker_id.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `message` with its key, value and headers plus the failure context. An error here
    /// is transient: the caller retries and never skips the record.
    pub async fn send(&self, message: &OwnedMessage, failure: &Failure) -> Result<()> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let context = [
            (header::ORIGINAL_TOPIC, message.topic().to_owned()),
            (header::ORIGINAL_PARTITION, message.partition().to_string()),
            (header::ORIGINAL_OFFSET, message.offset().to_string()),
            (header::ERROR_KIND, failure.kind.as_str().to_owned()),
            (header::ERROR_MESSAGE, failure.message.clone()),
            (header::ATTEMPTS, failure.attempts.to_string()),
            (
                header::FIRST_FAILURE_MS,
                failure.first_failure_ms.to_string(),
            ),
            (header::LAST_FAILURE_MS, failure.last_failure_ms.to_string()),
            (header::WORKER_ID, self.worker_id.clone()),
        ];
        for (key, value) in &context {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let result = self
            .producer
            .producer()
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e);
        if let Err(e) = &result {
            self.producer.replace_if_unusable(Some(e));
        }
        result.map_err(Error::Kafka)
    }
}

/// A dead letter as read back from the topic.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Every header, original and context, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    pub fn from_message(message: &OwnedMessage) -> Self {
        DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The headers the record had before it was dead-lettered.
    pub fn original_headers(&self) -> impl Iterator<Item = &(String, Option<Vec<u8>>)> {
        self.headers
            .iter()
            .filter(|(k, _)| !header::ALL.contains(&k.as_str()))
    }
}
