//! Records as the worker's batch step takes them, for tests that drive `apply_records` without
//! a broker.

use clerk_sync_core::{ClerkEvent, EventId};
use clerk_sync_worker::Record;
use serde_json::json;

const T: i64 = 1_754_560_800_000;

/// A record of `clerk.users` at `offset` carrying `body`, decoded as the worker decodes it.
pub fn record(offset: i64, body: &str) -> Record {
    let id = EventId::parse(format!("msg_{offset}")).expect("id");
    Record {
        topic: "clerk.users".into(),
        partition: 0,
        offset,
        decoded: ClerkEvent::decode(id, body.as_bytes()).map_err(clerk_sync_worker::Error::Decode),
        trace: None,
    }
}

/// A `user.created` for `user_<offset>` with these names.
pub fn user_record(offset: i64, first_name: &str, last_name: &str) -> Record {
    let body = json!({"type": "user.created", "object": "event", "timestamp": T, "data": {
        "id": format!("user_{offset:04}"), "object": "user", "first_name": first_name,
        "last_name": last_name, "created_at": T, "updated_at": T}});
    record(offset, &body.to_string())
}

/// The worker's metrics for a step a test drives, in a registry of their own.
pub fn worker_metrics() -> clerk_sync_worker::WorkerMetrics {
    clerk_sync_worker::WorkerMetrics::new(prometheus::Registry::new(), &["clerk.users".into()])
        .expect("metrics register")
}
