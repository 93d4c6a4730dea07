//! Ingest routes a body with a quick borrowed read ([`route_body`]); the worker parses it in
//! full ([`Envelope::parse`], [`route`]). The two must agree, or a record would be keyed or sent
//! to a topic other than its entity's. Shared by the property tests and the cargo-fuzz target;
//! enabled by the `testkit` feature, never part of the product.

use crate::{route, route_body, Envelope};

/// Same route and event type, or the same error, on every body a `serde_json::Value` can hold.
pub fn quick_and_full_routing_agree(bytes: &[u8]) {
    let full = Envelope::parse(bytes).and_then(|e| route(&e).map(|r| (e.event_type, r)));
    let quick = route_body(bytes).map(|r| (r.event_type.into_owned(), r.route));
    match (full, quick) {
        (Ok(full), Ok(quick)) => assert_eq!(full, quick, "{}", String::from_utf8_lossy(bytes)),
        (Err(full), Err(quick)) => assert_eq!(full.to_string(), quick.to_string()),
        (Ok(_), Err(e)) => panic!("quick read refused what the full parse routes: {e}"),
        (Err(_), Ok(_)) => assert!(
            serde_json::from_slice::<serde_json::Value>(bytes).is_err(),
            "quick read routed what the full parse refuses: {}",
            String::from_utf8_lossy(bytes)
        ),
    }
}
