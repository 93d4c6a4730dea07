use clerk_sync_core::record_header;
use rdkafka::message::{Header, OwnedHeaders};

/// The headers every event record carries — its Svix id, its type, its content type — then
/// `more` (ingest adds the Svix timestamp and the trace context, backfill its origin).
pub fn event_headers<'a>(
    event_id: &str,
    event_type: &str,
    more: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: record_header::EVENT_ID,
            value: Some(event_id),
        })
        .insert(Header {
            key: record_header::EVENT_TYPE,
            value: Some(event_type),
        })
        .insert(Header {
            key: record_header::CONTENT_TYPE,
            value: Some("application/json"),
        });
    for (key, value) in more {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}
