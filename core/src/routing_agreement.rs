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

/// A real `user.updated` whose fields an end user controls are replaced: `hostile` (any JSON
/// text) as `unsafe_metadata`, inside `private_metadata` and as a field Clerk may add; `name`
/// (the inside of a JSON string literal, escapes and all) as first name, last name and username.
pub fn user_event_with(hostile: &str, name: &str) -> String {
    let mut body = String::from(
        r#"{"type":"user.updated","object":"event","timestamp":1754560800000,"data":{"id":"user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a","object":"user","#,
    );
    body.push_str(r#""first_name":""#);
    body.push_str(name);
    body.push_str(r#"","last_name":""#);
    body.push_str(name);
    body.push_str(r#"","username":""#);
    body.push_str(name);
    body.push_str(r#"","email_addresses":[{"id":"idn_1","email_address":"a@example.com"}],"primary_email_address_id":"idn_1","public_metadata":{"role":"admin"},"unsafe_metadata":"#);
    body.push_str(hostile);
    body.push_str(r#","private_metadata":{"nested":"#);
    body.push_str(hostile);
    body.push_str(r#"},"a_field_clerk_adds":"#);
    body.push_str(hostile);
    body.push_str(r#","created_at":1754560800000,"updated_at":1754560800000}}"#);
    body
}

/// Whatever JSON an end user writes where the mirror does not look, and whatever text they type
/// as a name, an event ingest accepts is one the worker decodes, for the entity ingest keyed it
/// by, with the text stored as typed but for NUL (lone surrogates become U+FFFD).
pub fn accepted_user_event_decodes(hostile: &str, name: &str) {
    let body = user_event_with(hostile, name);
    let Ok(routed) = route_body(body.as_bytes()) else {
        // Not JSON at all (`hostile` or `name` broke the document): refused at the door.
        return;
    };
    let id = crate::EventId::parse("msg_hostile").expect("id");
    let decoded = crate::ClerkEvent::decode(id, body.as_bytes());
    let (_, event) = decoded.unwrap_or_else(|e| {
        panic!(
            "ingest accepts it but the worker cannot decode it: {}",
            crate::error_chain(&e)
        )
    });
    let crate::ClerkEvent::UserUpserted(user) = event else {
        panic!("decoded as another event: {event:?}");
    };
    assert_eq!(Some(user.id.as_str()), routed.route.key.as_deref());
    for text in [&user.first_name, &user.last_name, &user.username] {
        assert!(
            !text.as_deref().unwrap_or_default().contains('\0'),
            "NUL removed"
        );
    }
    assert_eq!(
        user.public_metadata.to_value(),
        Some(serde_json::json!({"role": "admin"}))
    );
}

/// JSON nested `depth` levels, objects and arrays taking turns, around `leaf`; written without
/// recursion so that any depth can be made.
pub fn nested(depth: usize, key: &str, leaf: &str) -> String {
    let mut text = String::with_capacity(depth * (key.len() + 6) + leaf.len());
    for level in 0..depth {
        if level % 2 == 0 {
            text.push_str("{\"");
            text.push_str(key);
            text.push_str("\":");
        } else {
            text.push('[');
        }
    }
    text.push_str(leaf);
    for level in (0..depth).rev() {
        text.push(if level % 2 == 0 { '}' } else { ']' });
    }
    text
}
