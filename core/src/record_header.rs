//! Header names of the records on the event topics: written by ingest and backfill, read by the
//! worker and the dead-letter tools. One list, so writers and readers cannot drift apart.

/// Svix's message id, the event's identity (deduplication, ordering ties).
pub const EVENT_ID: &str = "svix-id";
/// Svix's send time, as the webhook carried it.
pub const TIMESTAMP: &str = "svix-timestamp";
/// Clerk's event type (`user.created`, …), readable without parsing the body.
pub const EVENT_TYPE: &str = "clerk-event-type";
/// The webhook's Svix signatures as delivered (`v1,<base64> …`): the worker checks them again.
pub const SIGNATURE: &str = "svix-signature";
/// clerk-sync's own signature of a record it wrote itself (`v1,<base64>`, HMAC-SHA256 over
/// id, type and body with `RECORD_SIGNING_KEY`).
pub const OWN_SIGNATURE: &str = "clerk-sync-signature";
pub const CONTENT_TYPE: &str = "content-type";
/// Who wrote a record that did not come through ingest (`backfill`).
pub const ORIGIN: &str = "clerk-sync-origin";
