//! A large batch with a few records the database rejects for good (apply path, no broker).

use clerk_sync_core::{ClerkEvent, EventId};
use clerk_sync_worker::{apply_records, Health, Record, WorkerMetrics};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::harness::TestDb;

const T: i64 = 1_754_560_800_000;

fn user_record(offset: i64, last_name: &str) -> Record {
    let body = json!({"type": "user.created", "object": "event", "timestamp": T, "data": {
        "id": format!("user_{offset:04}"), "object": "user", "first_name": "Ada",
        "last_name": last_name, "created_at": T, "updated_at": T}});
    let id = EventId::parse(format!("msg_{offset}")).expect("id");
    Record {
        topic: "clerk.users".into(),
        partition: 0,
        offset,
        decoded: ClerkEvent::decode(id, body.to_string().as_bytes())
            .map_err(clerk_sync_worker::Error::Decode),
        trace: None,
    }
}

#[tokio::test]
async fn a_batch_the_database_rejects_sets_aside_only_the_records_it_rejects_and_applies_the_rest(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // An operator's constraint that three records of the batch can never satisfy.
    sqlx::query(
        "ALTER TABLE users ADD CONSTRAINT no_moreau CHECK (last_name IS DISTINCT FROM 'Moreau')",
    )
    .execute(&db.pool)
    .await?;
    let bad = [3_i64, 150, 151];
    let records: Vec<Record> = (0..200)
        .map(|i| {
            user_record(
                i,
                if bad.contains(&i) {
                    "Moreau"
                } else {
                    "Lovelace"
                },
            )
        })
        .collect();
    let health = Health::new(
        db.pool.clone(),
        WorkerMetrics::new(prometheus::Registry::new(), &["clerk.users".into()])?,
    );

    // Every transaction that writes takes a transaction id: the difference counts them.
    let xid = || async {
        sqlx::query_scalar::<_, i64>("SELECT txid_current()")
            .fetch_one(&db.pool)
            .await
    };
    let before = xid().await?;
    let (report, poison) =
        apply_records(&db.pool, &records, &health, &CancellationToken::new()).await?;
    let transactions = xid().await? - before - 1;

    let set_aside: Vec<i64> = poison.iter().map(|p| records[p.index].offset).collect();
    assert_eq!(set_aside, bad, "exactly the rejected records, in order");
    assert!(poison
        .iter()
        .all(|p| p.failure.kind == "database_rejected" && p.failure.attempts == 2));
    assert!(
        transactions <= 60,
        "halves, not one transaction per record: {transactions} transactions for 200 records"
    );
    assert_eq!(report.applied, 197);
    assert_eq!(report.dead_lettered, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE last_name = 'Lovelace'")
            .await,
        197
    );
    Ok(())
}
