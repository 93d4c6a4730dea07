//! Everything that parses untrusted bytes: envelope, routing and event decoding, and ingest's
//! quick routing read against the full parse, and hostile end-user fields against the decoder.
#![no_main]

use clerk_sync_core::routing_agreement::{accepted_user_event_decodes, quick_and_full_routing_agree};
use clerk_sync_core::{route, ClerkEvent, Envelope, EventId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = Envelope::parse(bytes) {
        let _ = route(&envelope);
    }
    // Ingest's quick routing read and the worker's full parse agree (it panics otherwise).
    quick_and_full_routing_agree(bytes);
    if let Ok(id) = EventId::parse("msg_fuzz") {
        let _ = ClerkEvent::decode(id, bytes);
    }
    // The same bytes as what an end user controls (unsafe_metadata, a typed name): an event
    // ingest accepts is one the worker decodes (it panics otherwise).
    if let Ok(text) = std::str::from_utf8(bytes) {
        accepted_user_event_decodes(text, "Ada");
        accepted_user_event_decodes("{}", text);
    }
});
