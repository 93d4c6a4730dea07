//! The invariant, through the real database: any shuffled, duplicated delivery of a Clerk
//! history, split into batches any way, leaves the tables Clerk's own order produces — also
//! when two workers apply their partitions at the same time. `PROPTEST_CASES` raises the
//! number of cases for longer local runs (the two-worker race that a deletion's cascade once
//! missed showed up about once in several thousand cases).

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

/// `PROPTEST_CASES` cases (default 200), nothing persisted.
fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The tables Clerk's own order produces (the reference model).
fn clerks_state(history: &[SimEvent]) -> Mirror {
    let mut expected = Mirror::default();
    for (meta, event) in decode(history) {
        expected.apply(&meta, &event);
    }
    expected
}

async fn tables_match(db: &TestDb, expected: &Mirror) -> Result<(), TestCaseError> {
    let fail = |e: anyhow::Error| TestCaseError::fail(e.to_string());
    prop_assert_eq!(expected.users(), db.users().await.map_err(fail)?);
    prop_assert_eq!(expected.orgs(), db.orgs().await.map_err(fail)?);
    prop_assert_eq!(
        expected.memberships(),
        db.memberships().await.map_err(fail)?
    );
    Ok(())
}

#[test]
fn any_delivery_order_and_duplication_converges_to_clerks_state_in_postgres() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDb::new()).expect("database");
    let mut runner = runner();
    let strategy = arb_history(30).prop_flat_map(|h| {
        (
            Just(h.clone()),
            arb_delivery(h),
            prop_oneof![1usize..8, 8usize..64],
        )
    });
    let result = runner.run(&strategy, |(history, delivery, batch_size)| {
        rt.block_on(async {
            let expected = clerks_state(&history);
            db.truncate()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for batch in decode(&delivery).chunks(batch_size) {
                apply_all(&db.pool, batch)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            tables_match(&db, &expected).await
        })
    });
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The record key ingest gives an event, by ingest's own routing (its Kafka partition follows
/// from it).
fn record_key(event: &SimEvent) -> Option<String> {
    clerk_sync_core::route_body(&event.body)
        .expect("routes")
        .route
        .key
}

/// One worker: its batches in order, each retried while the database says try again (two
/// workers' batches can deadlock; Postgres aborts one, the worker retries it).
async fn worker(
    pool: &sqlx::PgPool,
    events: Vec<(EventMeta, ClerkEvent)>,
    batch_size: usize,
) -> Result<(), String> {
    for batch in events.chunks(batch_size) {
        loop {
            match apply_all(pool, batch).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }
    Ok(())
}

#[test]
fn two_workers_applying_their_partitions_at_once_converge_to_clerks_state_in_postgres() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDb::new()).expect("database");
    // Deadlocks between the two workers are expected now and then; have Postgres break them
    // at once rather than after a second (allowed on the test's own server; else left as is).
    let pool = rt
        .block_on(async {
            let _ = sqlx::query(
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = %L', \
                 current_database(), '20ms'); END $$",
            )
            .execute(&db.pool)
            .await;
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&db.url)
                .await
        })
        .expect("workers' pool");
    let mut runner = runner();
    let strategy = arb_history(30)
        .prop_flat_map(|h| (Just(h.clone()), arb_delivery(h), 1usize..6, any::<u64>()));
    let result = runner.run(&strategy, |(history, delivery, batch_size, salt)| {
        rt.block_on(async {
            let expected = clerks_state(&history);
            db.truncate()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Records split over two partitions by key, as the topics split them.
            let (a, b): (Vec<SimEvent>, Vec<SimEvent>) = delivery.into_iter().partition(|e| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (salt, record_key(e)).hash(&mut h);
                h.finish() % 2 == 0
            });
            let (ra, rb) = tokio::join!(
                worker(&pool, decode(&a), batch_size),
                worker(&pool, decode(&b), batch_size)
            );
            ra.map_err(TestCaseError::fail)?;
            rb.map_err(TestCaseError::fail)?;
            tables_match(&db, &expected).await
        })
    });
    rt.block_on(pool.close());
    drop(db);
    if let Err(e) = result {
        panic!("{e}");
    }
}
