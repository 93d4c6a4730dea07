//! Writing a batch reduced (one change per row, as the worker's SQL does) ends in the same
//! tables as applying its events one by one, for any batching of any delivery.
#![cfg(feature = "testkit")]

use clerk_sync_core::mirror::Mirror;
use clerk_sync_core::reduce::reduce;
use clerk_sync_core::testkit::{arb_delivery, arb_history, SimEvent};
use clerk_sync_core::{ClerkEvent, EventId, EventMeta};
use proptest::prelude::*;

fn decode(events: &[SimEvent]) -> Vec<(EventMeta, ClerkEvent)> {
    events
        .iter()
        .map(|e| {
            let id = EventId::parse(e.svix_id.clone()).expect("simulated ids are valid");
            ClerkEvent::decode(id, &e.body).expect("simulated bodies decode")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn reduce_then_write_equals_applying_each_event_in_turn(
        (delivery, cuts) in arb_history(40)
            .prop_flat_map(arb_delivery)
            .prop_flat_map(|d| {
                let len = d.len();
                (Just(d), prop::collection::vec(0..=len, 0..6))
            })
    ) {
        let events = decode(&delivery);
        let mut one_by_one = Mirror::default();
        for (meta, event) in &events {
            one_by_one.apply(meta, event);
        }
        let mut cuts = cuts;
        cuts.extend([0, events.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        let mut batched = Mirror::default();
        for bounds in cuts.windows(2) {
            batched.apply_reduced(&reduce(&events[bounds[0]..bounds[1]]));
        }
        prop_assert_eq!(one_by_one.users(), batched.users());
        prop_assert_eq!(one_by_one.orgs(), batched.orgs());
        prop_assert_eq!(one_by_one.memberships(), batched.memberships());
    }
}
