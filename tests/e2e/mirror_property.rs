//! The invariant, through the real database: any shuffled, duplicated delivery of a Clerk
//! history, split into batches any way, leaves the tables Clerk's own order produces.
//! `PROPTEST_CASES` raises the number of cases for longer local runs.

use clerk_sync_core::mirror::Mirror;
use clerk_sync_core::testkit::{arb_delivery, arb_history, SimEvent};
use clerk_sync_core::{ClerkEvent, EventId, EventMeta};
use clerk_sync_worker::apply::apply_all;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::harness::TestDb;

fn decode(events: &[SimEvent]) -> Vec<(EventMeta, ClerkEvent)> {
    events
        .iter()
        .map(|e| {
            ClerkEvent::decode(EventId::parse(e.svix_id.clone()).expect("id"), &e.body)
                .expect("decodes")
        })
        .collect()
}

#[test]
fn any_delivery_order_and_duplication_converges_to_clerks_state_in_postgres() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDb::new()).expect("database");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = arb_history(30).prop_flat_map(|h| {
        (
            Just(h.clone()),
            arb_delivery(h),
            prop_oneof![1usize..8, 8usize..64],
        )
    });
    let result = runner.run(&strategy, |(history, delivery, batch_size)| {
        rt.block_on(async {
            let mut expected = Mirror::default();
            for (meta, event) in decode(&history) {
                expected.apply(&meta, &event);
            }
            db.truncate()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for batch in decode(&delivery).chunks(batch_size) {
                apply_all(&db.pool, batch)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            let users = db
                .users()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let orgs = db
                .orgs()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let memberships = db
                .memberships()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(expected.users(), users);
            prop_assert_eq!(expected.orgs(), orgs);
            prop_assert_eq!(expected.memberships(), memberships);
            Ok(())
        })
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}
