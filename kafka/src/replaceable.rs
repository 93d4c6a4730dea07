use std::sync::RwLock;

use clerk_sync_core::error_chain;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::ClientConfig;

/// An idempotent producer that replaces itself when the broker no longer accepts its identity
/// (a fatal error, or fenced after an epoch bump was refused): such a producer refuses every
/// later record, so without this a process would fail until restarted. A new identity costs
/// at most a duplicate, which the version rules (and redrive) absorb.
pub struct Replaceable {
    producer: RwLock<FutureProducer>,
    config: ClientConfig,
    /// Names it in logs (`ingest`, `dead-letter`).
    name: &'static str,
}

impl Replaceable {
    pub fn new(config: ClientConfig, name: &'static str) -> KafkaResult<Self> {
        Ok(Replaceable {
            producer: RwLock::new(config.create()?),
            config,
            name,
        })
    }

    /// The current producer (a cheap handle).
    pub fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a failed send: replaces the producer if `error` (or, whatever the error, the
    /// producer's fatal state) says the broker will refuse it from now on.
    pub fn replace_if_unusable(&self, error: Option<&KafkaError>) {
        let fenced = matches!(
            error,
            Some(KafkaError::MessageProduction(
                Code::ProducerFenced
                    | Code::InvalidProducerEpoch
                    | Code::UnknownProducerId
                    | Code::OutOfOrderSequenceNumber
            ))
        );
        let fatal = self.producer().client().fatal_error();
        if !fenced && fatal.is_none() {
            return;
        }
        tracing::error!(
            ?fatal,
            fenced,
            producer = self.name,
            "the Kafka producer is no longer usable; creating a new one"
        );
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                if let Ok(mut slot) = self.producer.write() {
                    *slot = fresh;
                }
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), producer = self.name, "could not create a new Kafka producer")
            }
        }
    }
}

/// Why `producer` did not deliver: a producer that became unusable (the broker refused its
/// idempotence id — a principal without `Write` on any topic, say) fails every queued record
/// as "purged in queue", and only its fatal error says why.
pub fn delivery_error(producer: &FutureProducer, error: KafkaError) -> KafkaError {
    match (&error, producer.client().fatal_error()) {
        (KafkaError::MessageProduction(Code::PurgeQueue), Some((code, _))) => {
            KafkaError::MessageProduction(code)
        }
        _ => error,
    }
}
