//! The reference model itself: any delivery of a history ends where Clerk's order ends.
#![cfg(feature = "testkit")]

use clerk_sync_core::mirror::Mirror;
use clerk_sync_core::testkit::{arb_delivery, arb_history, SimEvent};
use clerk_sync_core::{ClerkEvent, EventId};
use proptest::prelude::*;

fn apply_all(events: &[SimEvent]) -> Mirror {
    let mut mirror = Mirror::default();
    for e in events {
        let id = EventId::parse(e.svix_id.clone()).expect("simulated ids are valid");
        let (meta, event) = ClerkEvent::decode(id, &e.body).expect("simulated bodies decode");
        mirror.apply(&meta, &event);
    }
    mirror
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn any_shuffled_and_duplicated_delivery_converges_to_clerk_order(
        (history, delivery) in arb_history(40).prop_flat_map(|h| (Just(h.clone()), arb_delivery(h)))
    ) {
        let expected = apply_all(&history);
        let actual = apply_all(&delivery);
        prop_assert_eq!(expected.users(), actual.users());
        prop_assert_eq!(expected.orgs(), actual.orgs());
        prop_assert_eq!(expected.memberships(), actual.memberships());
    }
}
