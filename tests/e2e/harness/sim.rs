use anyhow::Result;
use clerk_sync_core::mirror::Mirror;
use clerk_sync_core::testkit::{arb_delivery, arb_op, arb_op_among, Clerk, SimEvent};
use clerk_sync_core::{ClerkEvent, EventId};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::TestDb;

/// A fixed (deterministic), non-trivial Clerk history of at least `min_len` events, and one
/// shuffled, duplicated delivery of it.
pub fn history_and_delivery(min_len: usize) -> Result<(Vec<SimEvent>, Vec<SimEvent>)> {
    history_and_delivery_among(min_len, arb_op())
}

/// [`history_and_delivery`] over a population of `users` and `orgs`: large enough, a long
/// history keeps creating, changing and deleting entities instead of settling into one with
/// every entity deleted.
pub fn lively_history_and_delivery(
    min_len: usize,
    users: u8,
    orgs: u8,
) -> Result<(Vec<SimEvent>, Vec<SimEvent>)> {
    history_and_delivery_among(min_len, arb_op_among(users, orgs))
}

fn history_and_delivery_among(
    min_len: usize,
    arb_op: impl Strategy<Value = clerk_sync_core::testkit::Op>,
) -> Result<(Vec<SimEvent>, Vec<SimEvent>)> {
    let mut runner = TestRunner::deterministic();
    // Grown one operation at a time: cheaper than drawing whole histories until one is long enough.
    let mut ops = Vec::new();
    // Some operations emit nothing (they make no sense in the state reached): the history is
    // rerun only every few of them, for long histories.
    let step = (min_len / 20).max(1);
    let history = loop {
        for _ in 0..step {
            ops.push(
                arb_op
                    .new_tree(&mut runner)
                    .map_err(anyhow::Error::msg)?
                    .current(),
            );
        }
        let h = Clerk::default().run(&ops);
        if h.len() >= min_len {
            break h;
        }
    };
    let delivery = arb_delivery(history.clone())
        .new_tree(&mut runner)
        .map_err(anyhow::Error::msg)?
        .current();
    Ok((history, delivery))
}

/// The tables after applying `history` in Clerk's order.
pub fn expected(history: &[SimEvent]) -> Result<Mirror> {
    let mut mirror = Mirror::default();
    for e in history {
        let (meta, event) = ClerkEvent::decode(EventId::parse(e.svix_id.clone())?, &e.body)?;
        mirror.apply(&meta, &event);
    }
    Ok(mirror)
}

pub async fn assert_tables_equal(db: &TestDb, expected: &Mirror) -> Result<()> {
    assert_eq!(db.users().await?, expected.users(), "users");
    assert_eq!(db.orgs().await?, expected.orgs(), "organizations");
    assert_eq!(
        db.memberships().await?,
        expected.memberships(),
        "org_memberships"
    );
    Ok(())
}
