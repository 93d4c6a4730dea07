//! One question asked of the brokers before a role starts: do they let these settings in? A
//! wrong SASL password, an untrusted broker certificate, a host name the certificate is not for
//! or a missing client certificate never heals by retrying, and librdkafka would retry it
//! forever behind a process that looks alive; so it stops the process at start-up, in one line.
//! A broker that cannot be reached at all is the environment, not the configuration: the caller
//! starts and reports not ready until it answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as Code;

use crate::clients::{config, Role};

/// Why the brokers refuse a client made with `options`, as a line naming the settings to look
/// at; `None` once they answer, or when none answered within `timeout` (unreachable).
pub fn refusal(brokers: &str, options: &[(String, String)], timeout: Duration) -> Option<String> {
    let consumer: BaseConsumer<Refusals> =
        match config(Role::Admin, brokers, options).create_with_context(Refusals::default()) {
            Ok(consumer) => consumer,
            // A property librdkafka rejects (a CA file that does not exist, say).
            Err(e) => return Some(format!("KAFKA_OPTIONS: {e}")),
        };
    let deadline = Instant::now() + timeout;
    // Short tries: a refusal is known as soon as the handshake fails, not when the wait ends.
    while Instant::now() < deadline {
        if consumer
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return None;
        }
        // Serves the client's events: the error callback is called from here.
        let _ = consumer.poll(Duration::from_millis(100));
        if let Some(reason) = consumer.context().refused() {
            return Some(explain(&reason));
        }
    }
    let _ = consumer.poll(Duration::from_millis(100));
    consumer.context().refused().map(|reason| explain(&reason))
}

/// The settings behind a refusal librdkafka reported.
fn explain(reason: &str) -> String {
    let settings = if reason.contains("SASL") {
        "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (and sasl.mechanism in KAFKA_OPTIONS)"
    } else if reason.contains("certificate verify failed") {
        "KAFKA_OPTIONS ssl.ca.location (the CA the brokers' certificates are signed by) and \
         KAFKA_BROKERS (a host name their certificates are for)"
    } else {
        "KAFKA_OPTIONS security.protocol and ssl.* (a listener that requires a client \
         certificate needs ssl.certificate.location and ssl.key.location)"
    };
    format!("the Kafka brokers refused the connection ({reason}): check {settings}")
}

/// Remembers the last authentication or TLS failure librdkafka reports.
#[derive(Default)]
struct Refusals(Mutex<Option<String>>);

impl Refusals {
    fn refused(&self) -> Option<String> {
        self.0.lock().ok()?.clone()
    }
}

impl ClientContext for Refusals {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_refusal(&error, reason) {
            if let Ok(mut last) = self.0.lock() {
                *last = Some(reason.to_owned());
            }
        } else {
            tracing::debug!(%error, reason, "start-up check: the brokers do not answer yet");
        }
    }
}

impl ConsumerContext for Refusals {}

/// A TLS listener refusing a client without a certificate is reported as a plain transport
/// failure ("Receive failed: … SSL routines::sslv3 alert bad certificate"), so the reason is
/// read too.
fn is_refusal(error: &KafkaError, reason: &str) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(Code::Authentication | Code::SSL)
    ) || reason.contains("SSL handshake failed")
        || reason.contains("SSL routines")
        || reason.contains("SASL authentication")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_settings_to_look_at() {
        assert!(explain("SASL authentication error: Authentication failed")
            .contains("KAFKA_SASL_PASSWORD"));
        assert!(
            explain("SSL handshake failed: certificate verify failed").contains("ssl.ca.location")
        );
        assert!(explain(
            "Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate"
        )
        .contains("ssl.certificate.location"));
    }

    #[test]
    fn a_broker_that_cannot_be_reached_is_not_a_refusal() {
        // Nothing listens on port 1: the environment, retried by the caller, not refused.
        assert_eq!(refusal("127.0.0.1:1", &[], Duration::from_secs(1)), None);
    }
}
