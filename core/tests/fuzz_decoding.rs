//! Property-based fuzzing (stable Rust, runs in CI): whatever bytes arrive, parsing and decoding
//! return a value or a typed error, never a panic. `fuzz/` has a cargo-fuzz target for longer runs.
#![cfg(feature = "testkit")]

use clerk_sync_core::routing_agreement::{
    accepted_user_event_decodes, nested, quick_and_full_routing_agree,
};
use clerk_sync_core::{route, ClerkEvent, Envelope, EventId};
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") && !path.ends_with("signed-headers.json") {
            out.push(std::fs::read(path).expect("fixture"));
        }
    }
    out
}

/// Parses and decodes like ingest and the worker do; returns nothing, must not panic. Ingest's
/// quick routing read must agree with the full parse.
fn exercise(bytes: &[u8]) {
    if let Ok(envelope) = Envelope::parse(bytes) {
        let _ = route(&envelope);
    }
    quick_and_full_routing_agree(bytes);
    let _ = ClerkEvent::decode(EventId::parse("msg_fuzz").expect("id"), bytes);
}

#[test]
fn the_quick_routing_read_agrees_with_the_full_parse_on_tricky_bodies() {
    let bodies = [
        r#"{"type":"organizationMembership.created","data":{"organization":{"user_id":"x","id":"org_1"},"public_user_data":{"id":"y","user_id":"user_1"}}}"#,
        r#"{"type":"organizationMembership.created","data":{"organization":{"id":"org_1"},"public_user_data":{"id":"user_1"}}}"#,
        r#"{"type":"organizationMembership.created","data":{"organization":["org_1"],"public_user_data":{"user_id":"user_1"}}}"#,
        r#"{"type":"user.created","data":{"id":"user_1","id":"user_2"}}"#,
        r#"{"type":"user.created","data":{"id":"user_1","id":null}}"#,
        r#"{"type":"user.created","data":{"id":"user_1","id":7}}"#,
        r#"{"type":"user.created","data":{"id":"user_1"}}"#,
        r#"{"type":"user.created","data":{"id":"   "}}"#,
        r#"{"type":"user.created","data":["user_1"]}"#,
        r#"["user.created", 1754560800000, {"id": "user_1"}]"#,
        r#"{"type":"user.created","type":"user.deleted","data":{"id":"user_1"}}"#,
        r#"{"type":"user.created","timestamp":"soon","data":{"id":"user_1"}}"#,
        r#"{"type":"session.created","data":{"id":5}}"#,
        r#"{"type":"user.created","data":{"id":"user_1"}} trailing"#,
        r#"{"type":"user.created","data":{"id":"user_1","big":1e400}}"#,
    ];
    for body in bodies {
        quick_and_full_routing_agree(body.as_bytes());
    }
    for fixture in fixtures() {
        quick_and_full_routing_agree(&fixture);
    }
}

/// A JSON value with every kind of node, nested a little.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("type".to_owned()),
                    Just("data".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("created_at".to_owned()),
                    Just("updated_at".to_owned()),
                    Just("organization".to_owned()),
                    Just("public_user_data".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let all = fixtures();
        let mut bytes = all[which.index(all.len())].clone();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        exercise(&bytes);
    }

    #[test]
    fn real_event_types_with_arbitrary_data_never_panic(
        event_type in prop_oneof![
            Just("user.created"), Just("user.updated"), Just("user.deleted"),
            Just("organization.created"), Just("organization.deleted"),
            Just("organizationMembership.created"), Just("organizationMembership.deleted"), Just("session.created")
        ],
        data in arb_json(),
        timestamp in any::<Option<i64>>(),
    ) {
        let body = serde_json::json!({"type": event_type, "timestamp": timestamp, "data": data});
        exercise(body.to_string().as_bytes());
    }
}

#[test]
fn every_fixture_decodes() {
    for bytes in fixtures() {
        ClerkEvent::decode(EventId::parse("msg_1").expect("id"), &bytes)
            .expect("a real payload decodes");
    }
}

/// The inside of a JSON string literal as an end user might make one: plain text, NUL, lone and
/// paired surrogates, bidi overrides, terminal escapes, quotes and backslashes.
fn arb_typed_name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Zé€ ]{0,4}",
            Just(r"\u0000".to_owned()),
            Just(r"\ud800".to_owned()),
            Just(r"\udfff".to_owned()),
            Just(r"\ud83d\ude00".to_owned()),
            Just(r"\u202e".to_owned()),
            Just(r"\u001b[31m".to_owned()),
            Just(r#"\"\\"#.to_owned()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

/// JSON an end user might write into `unsafe_metadata`: any value, nested to any depth, with
/// keys that are e-mail addresses, NUL or duplicates.
fn arb_hostile_json() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(0_usize), 1..200_usize, 1_000..60_000_usize],
        prop_oneof![
            Just("k".to_owned()),
            Just("alice@example.com".to_owned()),
            Just(r"\u0000".to_owned()),
            Just(r"\ud800".to_owned()),
        ],
        arb_json(),
    )
        .prop_map(|(depth, key, leaf)| nested(depth, &key, &leaf.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)
    ))]

    #[test]
    fn whatever_an_end_user_writes_an_event_ingest_accepts_is_one_the_worker_decodes(
        hostile in arb_hostile_json(),
        name in arb_typed_name(),
    ) {
        accepted_user_event_decodes(&hostile, &name);
    }
}

#[test]
fn unsafe_metadata_nested_200_5000_and_50000_deep_decodes_and_ingest_routes_it() {
    for depth in [126, 200, 5_000, 50_000] {
        let hostile = nested(depth, "k", "1");
        let body = clerk_sync_core::routing_agreement::user_event_with(&hostile, "Ada");
        clerk_sync_core::route_body(body.as_bytes()).expect("ingest accepts it");
        accepted_user_event_decodes(&hostile, "Ada");
    }
}
