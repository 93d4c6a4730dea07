//! Everything that parses untrusted bytes: envelope, routing and event decoding.
#![no_main]

use clerk_sync_core::{route, ClerkEvent, Envelope, EventId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = Envelope::parse(bytes) {
        let _ = route(&envelope);
    }
    if let Ok(id) = EventId::parse("msg_fuzz") {
        let _ = ClerkEvent::decode(id, bytes);
    }
});
