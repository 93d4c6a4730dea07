use std::collections::HashMap;

use clerk_sync_core::{ClerkEvent, EventId, EventMeta};
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

/// The event id is the `svix-id` header that ingest copies from the webhook; records written by
/// other tools without it get an id from their coordinates, stable across replays.
pub fn decode_record(message: &OwnedMessage) -> Record {
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
        Some(body) => EventId::parse(id)
            .and_then(|id| ClerkEvent::decode(id, body))
            .map_err(Error::Decode),
    };
    Record {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        decoded,
        trace: trace_context(message),
    }
}
