use std::collections::HashMap;
use std::time::Duration;

use clerk_sync_core::{ClerkEvent, EventId, EventMeta};
use clerk_sync_kafka::provenance::Provenance;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::{Error, Result};

/// A consumed record, decoded, with where it came from.
#[derive(Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub decoded: Result<(EventMeta, ClerkEvent)>,
    /// The trace the record was published in (W3C `traceparent` header), if any.
    pub trace: Option<opentelemetry::Context>,
}

fn trace_context(message: &OwnedMessage) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    let headers = message.headers()?;
    let carrier: HashMap<String, String> = headers
        .iter()
        .filter_map(|h| {
            Some((
                h.key.to_owned(),
                std::str::from_utf8(h.value?).ok()?.to_owned(),
            ))
        })
        .collect();
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// What a record must show before it is applied: a signature of Clerk's or clerk-sync's own
/// ([`Provenance`]), and no version later than now plus `max_clock_skew`.
#[derive(Debug)]
pub struct Trust {
    pub provenance: Provenance,
    pub max_clock_skew: Duration,
}

/// Decodes a record, once its provenance is checked: nothing of an unsigned body is read.
/// The event id is the `svix-id` header that ingest copies from the webhook; records written by
/// other tools without it get an id from their coordinates, stable across replays.
pub fn decode_record(message: &OwnedMessage, trust: &Trust, now_ms: i64) -> Record {
    let svix_id = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == clerk_sync_core::record_header::EVENT_ID)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    });
    let id = svix_id.unwrap_or_else(|| {
        format!(
            "kafka:{}:{}:{}",
            message.topic(),
            message.partition(),
            message.offset()
        )
    });
    let decoded = match message.payload() {
        None => Err(Error::EmptyRecord),
        Some(body) => trust
            .provenance
            .verify(message.headers(), body)
            .map_err(Error::Unsigned)
            .and_then(|_| {
                EventId::parse(id)
                    .and_then(|id| ClerkEvent::decode(id, body))
                    .map_err(Error::Decode)
            })
            .and_then(|(meta, event)| {
                let skew = trust.max_clock_skew.as_millis() as i64;
                match event.newest_time(&meta) {
                    Some(at) if at.get() > now_ms.saturating_add(skew) => {
                        Err(Error::FutureVersion {
                            ahead_ms: at.get() - now_ms,
                            skew_secs: trust.max_clock_skew.as_secs(),
                        })
                    }
                    _ => Ok((meta, event)),
                }
            }),
    };
    Record {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        decoded,
        trace: trace_context(message),
    }
}
